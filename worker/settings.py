"""One frozen settings object, read from ``INTENT_*`` environment variables.

Build it once at the entry point with :func:`load_settings` and pass it down;
no other module reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import ConfigError

ENV_PREFIX = "INTENT_"


class Settings(BaseSettings):
    """Every setting of the worker; the environment name is ``INTENT_`` + the upper-cased field."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    # Kafka
    kafka_bootstrap: str = Field(
        "localhost:9092",
        description="Kafka bootstrap servers, host:port[,host:port]")
    app_id: str = Field("intent-worker", description="Faust app id = Kafka consumer group")
    topic_events: str = Field("clickstream", description="input topic of click events")
    topic_scores: str = Field("intent-scores", description="output topic of intent scores")
    topic_alerts: str = Field("anomaly-alerts", description="output topic of anomaly alerts")
    topic_dlq: str = Field("clickstream-dlq", description="dead-letter topic")
    topic_outcomes: str = Field(
        "intent-outcomes", description="output topic of score outcomes (label once known)")
    topic_partitions: int = Field(8, ge=1, description="partitions for topics the worker creates")
    kafka_fetch_max_wait_ms: int = Field(
        100, ge=1, le=60_000,
        description="longest the broker may hold a fetch that finds no data (Faust's own: 1500)")
    kafka_session_timeout_s: float = Field(
        10.0, ge=1, le=300, description="consumer group session timeout (failure detection)"
    )
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="'exactly_once': Faust's transactions (needs a broker with transactions; "
                    "not the embedded one)",
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="where a new consumer group starts"
    )
    startup_timeout_s: float = Field(
        60.0, gt=0,
        description="give up (exit non-zero) if Kafka or Redis stay unreachable this long"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how to talk to Kafka (SSL = TLS; SASL_SSL = TLS + SASL)"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism with SASL_PLAINTEXT / SASL_SSL"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (never logged)")
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="CA bundle to verify the brokers (TLS); unset = system CAs")
    kafka_ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    kafka_ssl_keyfile: Path | None = Field(None, description="client private key (mutual TLS)")
    # Redis
    redis_url: str = Field(
        "redis://localhost:6379/0",
        description="Redis URL (redis:// or rediss:// for TLS)")
    redis_username: str | None = Field(None, description="Redis ACL user (overrides the URL's)")
    redis_password: SecretStr | None = Field(
        None,
        description="Redis password (overrides the URL's; never logged)")
    redis_tls_ca_file: Path | None = Field(
        None,
        description="CA bundle to verify Redis over rediss://")
    redis_cluster: bool = Field(False, description="INTENT_REDIS_URL is a node of a Redis Cluster")
    key_prefix: str = Field("iw", min_length=1, description="prefix of every Redis key")
    key_secret: SecretStr | None = Field(
        None, description="HMAC key: user ids in Redis keys become keyed hashes (pseudonymised)"
    )
    redis_state_check_s: float = Field(
        5.0, gt=0, le=3600,
        description="look this often whether Redis still holds the worker's state marker: a "
                    "Redis that came back empty (restart without persistence, flush) is counted "
                    "in intent_redis_state_lost_total and logged")
    # Model
    model_path: Path | None = Field(
        None,
        description="model directory; unset = the shipped default")
    model_poll_s: float = Field(
        10.0, ge=0,
        description="check the model directory for a new version this often (0 = only on SIGHUP)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the model runs")
    scorer: Literal["model", "noop"] = Field(
        "model", description="'noop' skips the model (benchmarks only): every score is 0.5"
    )
    torch_threads: int | None = Field(
        None, ge=1, le=1024,
        description="CPU threads of the model; unset = torch's default (one per core); "
                    "fewer on a busy host",
    )
    embed_cache_size: int = Field(
        20_000, ge=0, description="text vectors kept for windows whose text repeats (LRU; 0 = off)"
    )
    vector_cache_size: int = Field(
        50_000, ge=0, le=10_000_000,
        description="event-phrase vectors kept in process memory (LRU, float16; 0 = off, "
                    "every lookup goes to Redis)")
    vector_ttl_seconds: int = Field(
        7 * 86_400, ge=1,
        description="an event-phrase vector in Redis expires this long after its last write")
    shadow_model_path: Path | None = Field(
        None,
        description="a challenger model directory scored on the same inputs in the same batch; "
                    "its scores go only into the outcomes and the live metrics, never into "
                    "the score topic")
    # Outcomes and live quality
    outcomes_enabled: bool = Field(
        True,
        description="resolve each score's label from the stream (a purchase within the "
                    "model's horizon) and publish it on INTENT_TOPIC_OUTCOMES")
    outcome_sample: float = Field(
        1.0, gt=0, le=1, allow_inf_nan=False,
        description="share of users whose scores get outcomes (and shadow scores), chosen by a "
                    "stable hash of the user: the live figures on a sample cost that share of "
                    "the tracking (docs/outcomes.md)")
    outcome_lateness_s: int = Field(
        60, ge=0, le=86_400,
        description="a score is labelled 0 once its partition's event time passed its horizon "
                    "by this much (a purchase arriving later than this is not counted)")
    outcome_max_pending: int = Field(
        200, ge=1, le=100_000,
        description="scores waiting for their outcome per user, at most (the oldest are "
                    "dropped and counted)")
    outcome_sweep_users: int = Field(
        1000, ge=1, le=1_000_000,
        description="users whose scores are due a negative outcome resolved per batch, at most")
    live_window: int = Field(
        5000, ge=10, le=100_000,
        description="recent outcomes per model that the live quality metrics are computed on "
                    "(recomputed every 5 s on the event loop: about 1.3 ms per model at 5,000, "
                    "8 ms at 50,000)")
    # Batching and windows
    batch_max: int = Field(256, ge=1, le=100_000, description="events per micro-batch, at most")
    batch_wait_ms: int = Field(
        50, ge=1, le=60_000,
        description="longest wait to fill a micro-batch")
    gc_threshold: int = Field(
        10_000, ge=0, le=10_000_000,
        description="Python's generation-0 garbage-collection threshold in the worker (0 = "
                    "Python's default, 700): it allocates many short-lived objects per event, "
                    "and a higher threshold trades some memory for fewer collections")
    pipeline_overlap: Literal["auto", "on", "off"] = Field(
        "auto", description="prepare the next batch (parse, Redis, inputs) while the model runs "
                            "on this one; auto: on when the model runs on CUDA")
    explain: bool = Field(
        False,
        description="score records carry an explanation (baseline, top context features, most "
                    "influential events) when the model can give one (the pooled window model); "
                    "off by default: it adds about 20 % to the batch time with the model "
                    "(docs/benchmarks.md)")
    explain_top: int = Field(
        5, ge=1, le=50, description="features and events an explanation lists, each")
    window_max_events: int = Field(50, ge=1, le=10_000, description="events kept per user window")
    window_seconds: int = Field(3600, ge=1, description="event-time span of a user window")
    window_ttl_seconds: int = Field(
        86_400, ge=1,
        description="a window expires this long after its last write")
    window_cache_events: int = Field(
        20_000, ge=0, le=10_000_000,
        description="window events kept in memory between batches, so Redis sends a window "
                    "only when another writer changed it, and their share of the model inputs "
                    "(two generations of this many; 0 turns the caches off)")
    # Anomaly alerts. worker.anomaly.config.DetectorConfig takes its defaults from here and
    # checks the same bounds (a test checks that they agree); it gives each default's reason.
    anomaly_enabled: bool = Field(True, description="run the anomaly detectors and publish alerts")
    anomaly_velocity_min_purchases: int = Field(
        5, ge=2,
        description="purchase velocity: purchases in the span")
    anomaly_velocity_min_spend: float = Field(
        5000.0, gt=0, allow_inf_nan=False,
        description="purchase velocity: or this much spend in the span")
    anomaly_velocity_span_s: float = Field(
        600.0, gt=0, allow_inf_nan=False,
        description="purchase velocity: event-time span (s)")
    anomaly_bot_events: int = Field(
        12, ge=3, le=10_000,
        description="bot cadence: last events examined")
    anomaly_bot_max_median_gap_s: float = Field(
        0.5, ge=0, allow_inf_nan=False,
        description="bot cadence: median gap below this (s) fires")
    anomaly_bot_max_cv: float = Field(
        0.05, ge=0, allow_inf_nan=False,
        description="bot cadence: gap coefficient of variation below this fires...")
    anomaly_bot_max_mean_gap_s: float = Field(
        10.0, ge=0, allow_inf_nan=False,
        description="...when the mean gap is below this (s)")
    anomaly_ooc_max_score: float = Field(
        0.08, ge=0, le=1, allow_inf_nan=False,
        description="out-of-character: prior intent score below this (suits the shipped model)")
    anomaly_ooc_min_prior_events: int = Field(
        1, ge=0,
        description="out-of-character: events in the window before the purchase")
    anomaly_price_max_robust_z: float = Field(
        6.0, gt=0, allow_inf_nan=False,
        description="price outlier: robust z of ln price above this fires")
    anomaly_price_min_samples: int = Field(
        20, ge=3,
        description="price outlier: category prices needed to judge")
    anomaly_price_min_mad_log: float = Field(
        0.15, gt=0, allow_inf_nan=False,
        description="price outlier: floor of the MAD of ln price")
    anomaly_price_stats_capacity: int = Field(
        200, ge=3, le=100_000,
        description="price outlier: recent prices kept per category")
    anomaly_stats_ttl_seconds: int = Field(
        7 * 86_400, ge=1,
        description="a category's price sample expires this long after its last price"
    )
    anomaly_cooldown_s: float = Field(
        1800.0, ge=0, allow_inf_nan=False,
        description="at most one alert per user and kind per this much event time (s)")
    # Input limits
    max_event_bytes: int = Field(
        65_536, ge=256,
        description="larger messages are dead-lettered as too_large")
    dlq_payload_bytes: int = Field(
        4096, ge=0,
        description="raw payload kept in a dead letter, at most")
    # Operations
    web_port: int = Field(
        6066, ge=0, le=65_535,
        description="HTTP port of the worker (health, metrics)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="'json': one JSON object per log line")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.window_ttl_seconds < self.window_seconds:
            raise ValueError(
                "INTENT_WINDOW_TTL_SECONDS must be >= INTENT_WINDOW_SECONDS "
                f"({self.window_ttl_seconds} < {self.window_seconds})"
            )
        sasl = self.kafka_security_protocol.startswith("SASL")
        if sasl and (not self.kafka_sasl_username or self.kafka_sasl_password is None):
            raise ValueError(f"INTENT_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                             "INTENT_KAFKA_SASL_USERNAME and INTENT_KAFKA_SASL_PASSWORD")
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile",
                     "redis_tls_ca_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{env_name(name)}={str(path)!r}: no such file")
        if self.redis_tls_ca_file is not None and not self.redis_url.startswith("rediss://"):
            raise ValueError("INTENT_REDIS_TLS_CA_FILE needs a rediss:// INTENT_REDIS_URL")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            # not echoed: a URL may carry a password
            raise ValueError("INTENT_REDIS_URL must start with redis://, rediss:// or unix://")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("INTENT_KAFKA_SSL_CERTFILE and INTENT_KAFKA_SSL_KEYFILE go together")
        if self.shadow_model_path is not None and not self.shadow_model_path.is_dir():
            raise ValueError(f"INTENT_SHADOW_MODEL_PATH={str(self.shadow_model_path)!r}: "
                             "not a directory (a model directory made by intent-worker train)")
        if self.anomaly_price_stats_capacity < self.anomaly_price_min_samples:
            raise ValueError(
                f"INTENT_ANOMALY_PRICE_STATS_CAPACITY ({self.anomaly_price_stats_capacity}) must "
                f"be >= INTENT_ANOMALY_PRICE_MIN_SAMPLES ({self.anomaly_price_min_samples})")
        return self

    def model_threads(self) -> int | None:
        """``INTENT_TORCH_THREADS``, or None: leave torch's default (one thread per core)."""
        return self.torch_threads

    @property
    def broker_url(self) -> str:
        """The bootstrap list in Faust's ``kafka://`` form."""
        return ";".join(f"kafka://{h}" for h in self.bootstrap_list)

    @property
    def bootstrap_list(self) -> list[str]:
        return [h.strip() for h in self.kafka_bootstrap.split(",") if h.strip()]


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, raising :class:`ConfigError`.

    ``overrides`` (field names) win over the environment; the CLI uses them for
    flags. The error names the variable and the bad value, so start-up stops with
    one line that says what to fix.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        msg = err["msg"].removeprefix("Value error, ")
        if loc:
            lines.append(f"{env_name(str(loc[0]))}={err.get('input')!r}: {msg}")
        else:
            lines.append(msg)
    return "bad setting: " + "; ".join(lines)
