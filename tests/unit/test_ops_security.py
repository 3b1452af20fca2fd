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


def _tls_error(reason: str, text: str | None = None) -> StoreError:
    """An OpenSSL error as the ssl module raises it: ``reason`` set, the message around it
    (``text``: a message of its own, which the hints must not read)."""
    error = ssl.SSLError(1, text or f"[SSL: {reason}] {reason.lower().replace('_', ' ')}")
    error.library, error.reason = "SSL", reason
    return _store_error(error)


def _certificate_error(code: int, message: str) -> StoreError:
    """A server certificate that failed verification with OpenSSL's ``verify_code``."""
    error = ssl.SSLCertVerificationError(
        1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    error.library, error.reason = "SSL", "CERTIFICATE_VERIFY_FAILED"
    error.verify_code, error.verify_message = code, message
    return _store_error(error)


CERT = _certificate_error(19, "self-signed certificate in certificate chain")
CA_HINT = "signed by a CA this worker does not trust"
MTLS_HINT = "ssl_certfile and ssl_keyfile"
PORT_HINT = "names the server's TLS port"


@pytest.mark.parametrize(("code", "message", "expected", "not_expected"), [
    (10, "certificate has expired", "renew it, and check this host's clock", CA_HINT),
    (9, "certificate is not yet valid", "renew it, and check this host's clock", CA_HINT),
    (62, "Hostname mismatch, certificate is not valid for 'redis.internal'.",
     "INTENT_REDIS_URL is not one the server's TLS certificate is for", CA_HINT),
    (64, "IP address mismatch, certificate is not valid for '10.0.0.7'.",
     "INTENT_REDIS_URL is not one the server's TLS certificate is for", CA_HINT),
    (20, "unable to get local issuer certificate", CA_HINT, "clock"),
    (19, "self-signed certificate in certificate chain", CA_HINT, "clock"),
    (18, "self-signed certificate", CA_HINT, "clock"),
    (21, "unable to verify the first certificate", CA_HINT, "clock"),
    (26, "unsupported certificate purpose", "failed verification: fix the certificate", CA_HINT),
])
def test_a_rejected_server_certificate_is_explained_by_its_verify_code(
        code: int, message: str, expected: str, not_expected: str) -> None:
    from worker.redis_client import certificate_rejected, connection_hint

    error = _certificate_error(code, message)
    assert certificate_rejected(error)  # each stops start-up at once
    for tls in (True, False):
        hint = connection_hint(error, tls=tls)
        assert expected in hint and not_expected not in hint, hint


@pytest.mark.parametrize("reason", ["TLSV1_ALERT_UNKNOWN_CA", "TLSV13_ALERT_CERTIFICATE_REQUIRED",
                                    "SSLV3_ALERT_BAD_CERTIFICATE", "TLSV1_ALERT_DECRYPT_ERROR",
                                    "TLSV1_ALERT_ACCESS_DENIED"])
def test_a_tls_alert_from_the_server_says_it_refused_this_client(reason: str) -> None:
    from worker.redis_client import certificate_rejected, connection_hint

    error = _tls_error(reason)
    hint = connection_hint(error, tls=True)
    assert "refused this client" in hint and MTLS_HINT in hint, hint
    assert "signed by a CA the server trusts" in hint and PORT_HINT not in hint, hint
    assert not certificate_rejected(error)  # retried: a server's trust can be fixed meanwhile


@pytest.mark.parametrize("reason", ["WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING",
                                    "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"])
def test_a_handshake_that_met_no_tls_server_says_to_check_the_port(reason: str) -> None:
    from worker.redis_client import connection_hint

    assert PORT_HINT in connection_hint(_tls_error(reason), tls=True)


def test_tls_errors_are_read_from_their_reason_not_their_message() -> None:
    from worker.redis_client import connection_hint

    # the message says alert and certificate; OpenSSL's reason says no TLS server answered
    misleading = _tls_error("WRONG_VERSION_NUMBER", "tlsv1 ALERT: CERTIFICATE required?")
    assert PORT_HINT in connection_hint(misleading, tls=True)
    # an SSL error OpenSSL gave no known reason: no guess
    assert connection_hint(_tls_error("NO_CIPHERS_AVAILABLE"), tls=True) is None


def test_resets_and_timeouts_name_the_url_scheme_to_use() -> None:
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from worker.redis_client import certificate_rejected, connection_hint

    reset = _store_error(ConnectionResetError(104, "Connection reset by peer"))
    assert "must start with rediss://" in connection_hint(reset, tls=False)
    assert MTLS_HINT in connection_hint(reset, tls=True)  # a mutual-TLS server may reset
    try:
        raise StoreError("redis ping failed") from RedisTimeoutError("Timeout connecting")
    except StoreError as no_handshake:  # a TLS client of a plaintext port
        assert "must start with redis://" in connection_hint(no_handshake, tls=True)
        assert connection_hint(no_handshake, tls=False) is None
    refused = _store_error(ConnectionRefusedError(111, "Connection refused"))
    assert connection_hint(refused, tls=False) is None and not certificate_rejected(refused)


def test_explain_adds_the_hint_to_the_message_by_the_url_scheme() -> None:
    from worker.redis_client import describe_error, explain, uses_tls

    assert uses_tls("rediss://h:6380/0") and uses_tls("REDISS://h:6380/0")
    assert not uses_tls("redis://h:6379/0") and not uses_tls("unix:///run/redis.sock")
    alert = _tls_error("TLSV1_ALERT_UNKNOWN_CA")
    tls = load_settings(redis_url="rediss://127.0.0.1:6380/0")
    text = explain(alert, tls)
    assert text.startswith("redis ping failed: ConnectionError: ") and "UNKNOWN_CA" in text
    assert f"{str(alert).rstrip('.')}; the server refused this client" in text, text
    plain = load_settings(redis_url="redis://127.0.0.1:6380/0")
    assert explain(alert, plain) == str(alert).rstrip(".")  # a TLS alert on plaintext: no guess
    assert explain(alert, plain, otherwise="check X") == f"{str(alert).rstrip('.')}; check X"
    assert describe_error(KeyError("k")) == "KeyError: 'k'"


class _FailingStore:
    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        self.pings = 0

    async def ping(self) -> None:
        self.pings += 1
        raise _store_error(self.cause)


async def test_a_rejected_certificate_stops_start_up_at_once_naming_the_ca_setting() -> None:
    from worker.runtime import wait_for_redis

    store = _FailingStore(CERT.__cause__.__cause__)
    settings = load_settings(redis_url="rediss://127.0.0.1:6380/0")
    with pytest.raises(ConfigError) as info:
        await wait_for_redis(store, timeout_s=30.0, settings=settings)
    assert store.pings == 1  # not retried: waiting cannot fix a certificate
    message = str(info.value)
    assert "CERTIFICATE_VERIFY_FAILED" in message and "INTENT_REDIS_TLS_CA_FILE" in message
    assert ".;" not in message
    assert isinstance(info.value.__cause__, StoreError)  # the chain kept for exc_info


async def test_the_hint_comes_with_the_final_error_not_each_retry(
        caplog: pytest.LogCaptureFixture) -> None:
    from worker.errors import ServiceUnavailable
    from worker.runtime import wait_for_redis

    store = _FailingStore(ConnectionResetError(104, "Connection reset by peer"))
    settings = load_settings(redis_url="redis://127.0.0.1:6380/0")
    with (caplog.at_level(logging.WARNING, logger="worker.runtime"),
          pytest.raises(ServiceUnavailable, match="not reachable after 1s") as info):
        await wait_for_redis(store, timeout_s=1.0, settings=settings)
    assert store.pings > 1
    assert "rediss://" in str(info.value) and "INTENT_REDIS_URL" in str(info.value)
    assert isinstance(info.value.__cause__, StoreError)
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert retries and all("reset" in line for line in retries), retries
    assert not any("rediss://" in line for line in retries), retries  # a restart resets too
