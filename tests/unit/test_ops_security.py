"""Kafka TLS/SASL options (Faust and aiokafka agree; the TLS context does a real handshake with
a loopback server), Redis TLS error hints, JSON logs, metrics exposition."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from pathlib import Path

import orjson
import pytest

from tests.support.tls import TlsFiles, make_tls_files
from worker.errors import ConfigError, StoreError
from worker.kafka.security import aiokafka_options, faust_credentials
from worker.ops.logs import JsonFormatter, logging_config
from worker.ops.metrics import Metrics
from worker.settings import load_settings


def test_plaintext_adds_nothing() -> None:
    settings = load_settings()
    assert aiokafka_options(settings) == {} and faust_credentials(settings) is None


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_reaches_faust_and_aiokafka_alike(protocol: str, mechanism: str) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    settings = load_settings(kafka_security_protocol=protocol, kafka_sasl_mechanism=mechanism,
                             kafka_sasl_username="svc-intent", kafka_sasl_password="s3cret")
    ours = aiokafka_options(settings)
    theirs = dict(credentials_to_aiokafka_auth(faust_credentials(settings)))
    assert ours["security_protocol"] == theirs["security_protocol"] == protocol
    assert ours["sasl_mechanism"] == theirs["sasl_mechanism"] == mechanism
    assert ours["sasl_plain_username"] == theirs["sasl_plain_username"] == "svc-intent"
    assert ours["sasl_plain_password"] == theirs["sasl_plain_password"] == "s3cret"
    if protocol == "SASL_SSL":
        assert isinstance(ours["ssl_context"], ssl.SSLContext)
        assert ours["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    else:
        assert "ssl_context" not in ours and theirs["ssl_context"] is None
    assert "s3cret" not in repr(settings)  # secrets are masked wherever settings are shown


def _handshake(context: ssl.SSLContext, files: TlsFiles) -> str | None:
    """A TLS handshake of ``context`` (as a client of ``localhost``) with a loopback server
    that shows the test CA's server certificate and asks for a client certificate (not
    required). The client certificate's common name the server saw, or ``None`` for none."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files.ca))
    server_ctx.load_cert_chain(str(files.server_cert), str(files.server_key))
    server_ctx.verify_mode = ssl.CERT_OPTIONAL
    seen: list[str | None] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def serve() -> None:
            conn, _ = listener.accept()
            with contextlib.suppress(ssl.SSLError, OSError), \
                    server_ctx.wrap_socket(conn, server_side=True) as tls:
                peer = tls.getpeercert()
                seen.append(dict(x[0] for x in peer["subject"])["commonName"] if peer else None)
                tls.recv(1)  # until the client closes

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with (socket.create_connection(listener.getsockname(), timeout=5) as sock,
                  context.wrap_socket(sock, server_hostname="localhost")):
                pass
        finally:
            thread.join(timeout=5)
    return seen[0]


def test_the_kafka_tls_context_verifies_the_broker_and_shows_the_client_certificate(
        tmp_path: Path) -> None:
    # no TLS broker here (the embedded one speaks plaintext): the context that reaches aiokafka
    # and Faust does a real handshake with a loopback TLS server and the test CA instead
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    files = make_tls_files(tmp_path)
    settings = load_settings(kafka_security_protocol="SSL", kafka_ssl_cafile=files.ca)
    ours = aiokafka_options(settings)
    theirs = credentials_to_aiokafka_auth(faust_credentials(settings))
    assert ours["security_protocol"] == theirs["security_protocol"] == "SSL"
    assert _handshake(ours["ssl_context"], files) is None  # verified the server; no client cert
    assert _handshake(theirs["ssl_context"], files) is None
    mutual = load_settings(kafka_security_protocol="SSL", kafka_ssl_cafile=files.ca,
                           kafka_ssl_certfile=files.client_cert,
                           kafka_ssl_keyfile=files.client_key)
    assert _handshake(aiokafka_options(mutual)["ssl_context"], files) == "intent-worker"
    wrong = load_settings(kafka_security_protocol="SASL_SSL", kafka_ssl_cafile=files.other_ca,
                          kafka_sasl_username="u", kafka_sasl_password="p")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(aiokafka_options(wrong)["ssl_context"], files)


def test_bad_security_settings_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError,
                       match="needs INTENT_KAFKA_SASL_USERNAME and INTENT_KAFKA_SASL_PASSWORD"):
        load_settings(kafka_security_protocol="SASL_SSL")
    with pytest.raises(ConfigError, match="INTENT_KAFKA_SSL_CAFILE=.*no such file"):
        load_settings(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "missing.pem")
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="go together"):
        load_settings(kafka_security_protocol="SSL", kafka_ssl_certfile=cert)
    with pytest.raises(ConfigError, match="needs a rediss://"):
        load_settings(redis_tls_ca_file=cert)
    with pytest.raises(ConfigError, match="INTENT_REDIS_URL"):
        load_settings(redis_url="http://localhost:6379")


def test_json_log_lines() -> None:
    record = logging.LogRecord("worker.app", logging.WARNING, __file__, 1, "batch of %d failed",
                               (3,), None)
    doc = orjson.loads(JsonFormatter().format(record))
    assert doc["level"] == "WARNING" and doc["logger"] == "worker.app"
    assert doc["message"] == "batch of 3 failed" and doc["ts"].endswith("+00:00")
    config = logging_config(load_settings(log_format="json", log_level="DEBUG"))
    assert config["formatters"]["main"]["()"] is JsonFormatter
    assert config["root"]["level"] == "DEBUG"


def test_metrics_exposition() -> None:
    m = Metrics()
    m.observe_batch(messages=10, events=8, scores=5, latencies_s=[0.2, 0.4],
                    dead_letter_reasons=["invalid_json"] * 2, alert_kinds=["bot_cadence"],
                    batch_s=0.5, model_s=0.3, redis_s=0.01, detect_s=0.002, sequences=5)
    m.set_lag({("clickstream", 3): 42})
    m.set_model("intent-minilm", "1.0.0")
    text = m.render().decode()
    for line in ('intent_events_in_total 10.0', 'intent_events_scored_total 8.0',
                 'intent_dead_letters_total{reason="invalid_json"} 2.0',
                 'intent_alerts_total{kind="bot_cadence"} 1.0',
                 'intent_consumer_lag{partition="3",topic="clickstream"} 42.0',
                 'intent_model_info{name="intent-minilm",version="1.0.0"} 1.0',
                 'intent_event_to_score_seconds_count 2.0'):
        assert line in text, line
    assert Metrics().render() != m.render()  # each app has its own registry
    m.drop_lag([("clickstream", 3), ("clickstream", 9)])  # 9 was never reported
    assert "intent_consumer_lag{" not in m.render().decode()


# --- Redis TLS: what to fix when the connection fails (real servers: test_redis_tls.py) -------


def _store_error(cause: BaseException) -> StoreError:
    """A store's error as redis-py raises it: a ConnectionError raised while handling ``cause``."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        try:
            raise cause
        except OSError as exc:
            raise RedisConnectionError(f"Error connecting to 127.0.0.1:6380. {exc}.") from exc
    except RedisConnectionError as exc:
        try:
            raise StoreError(f"redis ping failed: ConnectionError: {exc}") from exc
        except StoreError as store_error:
            return store_error


CERT = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                                       "failed: self-signed certificate in certificate chain")


def test_tls_hints_name_the_setting_to_fix() -> None:
    from worker.redis_client import certificate_rejected, connection_hint

    for tls in (True, False):
        assert "INTENT_REDIS_TLS_CA_FILE" in connection_hint(_store_error(CERT), tls=tls)
    assert certificate_rejected(_store_error(CERT))
    wrong_port = _store_error(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"))
    assert not certificate_rejected(wrong_port)
    assert "TLS port" in connection_hint(wrong_port, tls=True)
    reset = _store_error(ConnectionResetError(104, "Connection reset by peer"))
    assert "rediss://" in connection_hint(reset, tls=False)
    no_client_cert = _store_error(ssl.SSLError(
        1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required"))
    for asked in (no_client_cert, reset):  # a rediss:// URL already: mutual TLS, maybe
        assert "ssl_certfile and ssl_keyfile" in connection_hint(asked, tls=True)
    from redis.exceptions import TimeoutError as RedisTimeoutError

    try:
        raise StoreError("redis ping failed") from RedisTimeoutError("Timeout connecting")
    except StoreError as no_handshake:  # a TLS client of a plaintext port
        assert "redis://" in connection_hint(no_handshake, tls=True)
        assert connection_hint(no_handshake, tls=False) is None
    refused = _store_error(ConnectionRefusedError(111, "Connection refused"))
    assert connection_hint(refused, tls=False) is None and not certificate_rejected(refused)


class _FailingStore:
    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        self.pings = 0

    async def ping(self) -> None:
        self.pings += 1
        raise _store_error(self.cause)


async def test_a_rejected_certificate_stops_start_up_at_once_naming_the_ca_setting() -> None:
    from worker.runtime import wait_for_redis

    store = _FailingStore(CERT)
    with pytest.raises(ConfigError) as info:
        await wait_for_redis(store, timeout_s=30.0, tls=True)
    assert store.pings == 1  # not retried: waiting cannot fix a certificate
    message = str(info.value)
    assert "CERTIFICATE_VERIFY_FAILED" in message and "INTENT_REDIS_TLS_CA_FILE" in message
    assert "INTENT_REDIS_URL" in message and ".;" not in message


async def test_a_reset_plaintext_connection_is_retried_then_says_to_use_rediss() -> None:
    from worker.errors import ServiceUnavailable
    from worker.runtime import wait_for_redis

    store = _FailingStore(ConnectionResetError(104, "Connection reset by peer"))
    with pytest.raises(ServiceUnavailable, match="not reachable after 1s") as info:
        await wait_for_redis(store, timeout_s=1.0, tls=False)
    assert store.pings > 1
    assert "rediss://" in str(info.value) and "INTENT_REDIS_URL" in str(info.value)
