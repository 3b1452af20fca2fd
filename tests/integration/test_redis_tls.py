"""Redis over TLS for real: a redis-server speaking TLS only, with a server certificate from a
test CA made here (tests/support/tls.py). The worker's client and ``intent-worker forget``
connect with ``rediss://`` and INTENT_REDIS_TLS_CA_FILE; a wrong CA, an expired server
certificate, a host the certificate does not name, a URL of the wrong scheme for the port and a
client certificate the server does not accept are refused with what to fix."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.support.tls import TlsFiles, running_tls_redis
from worker.ops.stack import Process
from worker.redis_client import redis_client
from worker.settings import load_settings
from worker.windows import KeyBuilder, RedisWindowStore

T0 = 1_700_000_000_000


def ev(eid: str, user: str) -> dict:
    return {"event_id": eid, "user_id": user, "event_type": "view", "ts": T0}


def tls_client(port: int, ca: Path) -> aioredis.Redis:
    """A client of our own (not the worker's) to look at the server."""
    return aioredis.Redis.from_url(f"rediss://127.0.0.1:{port}/0", ssl_ca_certs=str(ca))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])  # the IP and the DNS name SANs
async def test_the_worker_client_pings_writes_and_reads_windows_over_tls(tls_redis, tls_files,
                                                                         host) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    settings = load_settings(redis_url=f"rediss://{host}:{tls_redis.port}/0",
                             redis_tls_ca_file=tls_files.ca, key_prefix=prefix)
    client = redis_client(settings)
    try:
        assert await client.ping() is True  # the server has no plaintext port: this is TLS
    finally:
        await client.aclose()
    store = RedisWindowStore.from_settings(settings)
    await store.start()
    try:
        await store.append({"alice": [ev("a1", "alice")], "bob": [ev("b1", "bob")]})
        store.windows.drop("alice")  # the next read comes from Redis, not the store's cache
        windows = await store.append({"alice": [ev("a2", "alice")]})
        assert [e["event_id"] for e in windows["alice"]] == ["a1", "a2"]
    finally:
        await store.stop()
    raw = tls_client(tls_redis.port, tls_files.ca)
    try:
        assert [k async for k in raw.scan_iter(match=f"{prefix}:*")]
    finally:
        keys = [k async for k in raw.scan_iter(match=f"{prefix}:*")]
        await raw.delete(*keys)
        await raw.aclose()


def forget(env: dict[str, str], *users: str) -> subprocess.CompletedProcess:
    """``intent-worker forget`` as an operator runs it: its own process, env settings only."""
    return subprocess.run([sys.executable, "-m", "worker.cli", "forget", *users],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def test_forget_deletes_a_users_state_over_tls(tls_redis, tls_files) -> None:
    prefix = f"f{uuid.uuid4().hex[:8]}"
    url = f"rediss://127.0.0.1:{tls_redis.port}/0"
    keys = KeyBuilder(prefix, None)

    async def setup() -> None:
        store = RedisWindowStore.from_settings(
            load_settings(redis_url=url, redis_tls_ca_file=tls_files.ca, key_prefix=prefix))
        await store.start()
        try:
            await store.append({"alice": [ev("a", "alice")], "bob": [ev("b", "bob")]})
        finally:
            await store.stop()

    async def count(user: str) -> int:
        raw = tls_client(tls_redis.port, tls_files.ca)
        try:
            return await raw.exists(*keys.user_keys(user))
        finally:
            await raw.aclose()

    asyncio.run(setup())
    assert asyncio.run(count("alice")) > 0 and asyncio.run(count("bob")) > 0
    done = forget({"INTENT_REDIS_URL": url, "INTENT_REDIS_TLS_CA_FILE": str(tls_files.ca),
                   "INTENT_KEY_PREFIX": prefix}, "alice")
    assert done.returncode == 0, done.stderr
    assert "forgot alice" in done.stdout
    assert asyncio.run(count("alice")) == 0 and asyncio.run(count("bob")) > 0


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The CLI's error: non-zero exit, one line on stderr, no traceback."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_forget_with_the_wrong_ca_names_the_cause_and_the_setting(tls_redis, tls_files) -> None:
    line = one_error_line(forget({"INTENT_REDIS_URL": f"rediss://127.0.0.1:{tls_redis.port}/0",
                                  "INTENT_REDIS_TLS_CA_FILE": str(tls_files.other_ca)}, "alice"))
    assert "CERTIFICATE_VERIFY_FAILED" in line, line
    assert "a CA this worker does not trust" in line and "INTENT_REDIS_TLS_CA_FILE" in line, line


def test_forget_with_a_host_the_certificate_does_not_name_says_so(tls_redis, tls_files) -> None:
    # the server listens on 127.0.0.2 too; its certificate names 127.0.0.1 and localhost
    line = one_error_line(forget({"INTENT_REDIS_URL": f"rediss://127.0.0.2:{tls_redis.port}/0",
                                  "INTENT_REDIS_TLS_CA_FILE": str(tls_files.ca)}, "alice"))
    assert "IP address mismatch" in line, line
    assert "INTENT_REDIS_URL is not one the server's TLS certificate is for" in line, line
    assert "INTENT_REDIS_TLS_CA_FILE" not in line, line  # the CA is right


@pytest.fixture(scope="module")
def expired_redis(tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Process]:
    yield from running_tls_redis(tls_files, tmp_path_factory, "redis-expired", expired=True)


def test_forget_with_an_expired_server_certificate_says_to_renew_it(expired_redis,
                                                                     tls_files) -> None:
    line = one_error_line(forget({"INTENT_REDIS_URL": f"rediss://127.0.0.1:{expired_redis.port}/0",
                                  "INTENT_REDIS_TLS_CA_FILE": str(tls_files.ca)}, "alice"))
    assert "certificate has expired" in line, line
    assert "not valid now" in line and "renew it, and check this host's clock" in line, line
    assert "INTENT_REDIS_TLS_CA_FILE" not in line, line  # the CA is right


def test_forget_with_a_plaintext_url_to_the_tls_port_says_to_use_rediss(tls_redis) -> None:
    line = one_error_line(forget({"INTENT_REDIS_URL": f"redis://127.0.0.1:{tls_redis.port}/0"},
                                 "alice"))
    assert "reset" in line and "rediss://" in line and "INTENT_REDIS_URL" in line, line


def test_forget_with_a_tls_url_to_a_plaintext_port_says_to_use_redis(redis_url) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]  # the session's plaintext redis-server
    line = one_error_line(forget({"INTENT_REDIS_URL": f"rediss://127.0.0.1:{port}/0"}, "alice"))
    assert "TLS handshake" in line and "must start with redis://" in line, line


@pytest.fixture(scope="module")
def mtls_redis(tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Process]:
    yield from running_tls_redis(tls_files, tmp_path_factory, "redis-mtls", client_certs=True)


async def test_mutual_tls_with_a_client_certificate_in_the_url_query(mtls_redis,
                                                                     tls_files) -> None:
    # no setting of its own: redis-py takes ssl_certfile and ssl_keyfile from the URL's query
    base = f"rediss://127.0.0.1:{mtls_redis.port}/0"
    prefix = f"m{uuid.uuid4().hex[:8]}"
    url = f"{base}?ssl_certfile={tls_files.client_cert}&ssl_keyfile={tls_files.client_key}"
    store = RedisWindowStore.from_settings(
        load_settings(redis_url=url, redis_tls_ca_file=tls_files.ca, key_prefix=prefix))
    await store.start()
    try:
        windows = await store.append({"carol": [ev("c1", "carol")]})
        assert [e["event_id"] for e in windows["carol"]] == ["c1"]
        await store.forget("carol")
    finally:
        await store.stop()


def test_mutual_tls_without_a_client_certificate_says_how_to_give_one(mtls_redis,
                                                                     tls_files) -> None:
    line = one_error_line(forget({"INTENT_REDIS_URL": f"rediss://127.0.0.1:{mtls_redis.port}/0",
                                  "INTENT_REDIS_TLS_CA_FILE": str(tls_files.ca)}, "alice"))
    assert "ssl_certfile and ssl_keyfile" in line and "INTENT_REDIS_URL" in line, line


def test_mutual_tls_with_a_client_certificate_from_another_ca_says_whose_ca(mtls_redis,
                                                                            tls_files) -> None:
    query = f"ssl_certfile={tls_files.other_client_cert}&ssl_keyfile={tls_files.other_client_key}"
    line = one_error_line(forget({
        "INTENT_REDIS_URL": f"rediss://127.0.0.1:{mtls_redis.port}/0?{query}",
        "INTENT_REDIS_TLS_CA_FILE": str(tls_files.ca)}, "alice"))
    assert "TLSV1_ALERT_UNKNOWN_CA" in line, line  # the server's alert, as OpenSSL names it
    assert "refused this client" in line and "signed by a CA the server trusts" in line, line
    assert "TLS port" not in line, line  # the port is right; the certificate is not
