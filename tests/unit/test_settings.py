import subprocess
import sys
from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.settings import load_settings


def test_defaults_match_the_contract(monkeypatch):
    for k in list(__import__("os").environ):
        if k.startswith("INTENT_"):
            monkeypatch.delenv(k)
    s = load_settings()
    assert s.kafka_bootstrap == "localhost:9092"
    assert s.redis_url == "redis://localhost:6379/0"
    assert (s.topic_events, s.topic_scores, s.topic_alerts, s.topic_dlq) == (
        "clickstream", "intent-scores", "anomaly-alerts", "clickstream-dlq")
    assert s.auto_offset_reset == "earliest"
    assert s.model_path is None and s.device == "auto"


def test_environment_is_read_and_frozen(monkeypatch):
    monkeypatch.setenv("INTENT_BATCH_MAX", "17")
    monkeypatch.setenv("INTENT_MODEL_PATH", "/models/x")
    s = load_settings()
    assert s.batch_max == 17 and s.model_path == Path("/models/x")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        s.batch_max = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("var", "value"),
    [("INTENT_BATCH_MAX", "abc"), ("INTENT_BATCH_MAX", "0"), ("INTENT_DEVICE", "tpu"),
     ("INTENT_AUTO_OFFSET_RESET", "middle"), ("INTENT_WEB_PORT", "70000"),
     ("INTENT_BATCH_WAIT_MS", "-5")],
)
def test_a_bad_value_names_the_variable(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert var in str(err.value) and value in str(err.value)


def test_ttl_shorter_than_the_window_is_refused(monkeypatch):
    monkeypatch.setenv("INTENT_WINDOW_SECONDS", "600")
    monkeypatch.setenv("INTENT_WINDOW_TTL_SECONDS", "60")
    with pytest.raises(ConfigError, match="INTENT_WINDOW_TTL_SECONDS"):
        load_settings()


def test_broker_url_for_faust():
    s = load_settings(kafka_bootstrap="a:1, b:2")
    assert s.broker_url == "kafka://a:1;kafka://b:2"
    assert s.bootstrap_list == ["a:1", "b:2"]


def test_settings_import_nothing_above_them() -> None:
    code = ("import sys, worker.settings; "
            "print(sorted(m for m in sys.modules if m.startswith('worker')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['worker', 'worker.errors', 'worker.settings']"


def test_a_bad_anomaly_threshold_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTENT_ANOMALY_PRICE_MIN_SAMPLES", "500")
    with pytest.raises(ConfigError, match="INTENT_ANOMALY_PRICE_STATS_CAPACITY .*"
                                          "INTENT_ANOMALY_PRICE_MIN_SAMPLES"):
        load_settings()
    monkeypatch.setenv("INTENT_ANOMALY_PRICE_MIN_SAMPLES", "20")
    monkeypatch.setenv("INTENT_ANOMALY_BOT_MAX_CV", "nan")
    with pytest.raises(ConfigError, match="INTENT_ANOMALY_BOT_MAX_CV='nan': .*finite number"):
        load_settings()


def test_sample_sizes_are_bounded() -> None:
    with pytest.raises(ConfigError, match="INTENT_ANOMALY_PRICE_STATS_CAPACITY"):
        load_settings(anomaly_price_stats_capacity=10**7)
