"""Redis AUTH and ACL users for real, and ``intent-worker forget`` on a real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from worker.anomaly.state import RedisDetectorState
from worker.cli import main
from worker.errors import StoreError
from worker.ops.stack import start_redis
from worker.outcomes.pending import Pending, pack
from worker.outcomes.redis_state import RedisOutcomeState
from worker.outcomes.state import Writes, due_member
from worker.settings import load_settings
from worker.windows import KeyBuilder, RedisWindowStore

T0 = 1_700_000_000_000
PASSWORD = "correct horse battery staple"


def ev(eid: str, user: str) -> dict:
    return {"event_id": eid, "user_id": user, "event_type": "view", "ts": T0}


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory):
    proc = start_redis(password=PASSWORD, workdir=tmp_path_factory.mktemp("redis-auth"))
    yield proc
    proc.stop()


async def test_password_from_the_settings(locked_redis) -> None:
    url = f"redis://127.0.0.1:{locked_redis.port}/0"
    store = RedisWindowStore.from_settings(load_settings(redis_url=url, redis_password=PASSWORD))
    await store.start()
    try:
        assert (await store.append({"u1": [ev("a", "u1")]}))["u1"][0]["event_id"] == "a"
    finally:
        await store.stop()


@pytest.mark.parametrize("password", [None, "wrong"])
async def test_no_or_a_wrong_password_is_a_clear_error_without_the_secret(locked_redis,
                                                                          password) -> None:
    url = f"redis://127.0.0.1:{locked_redis.port}/0"
    store = RedisWindowStore.from_settings(load_settings(redis_url=url, redis_password=password))
    with pytest.raises(StoreError, match="(?i)auth|password") as info:
        await store.start()
    assert PASSWORD not in str(info.value) and "wrong" not in str(info.value)
    await store.stop()


async def test_an_acl_user_with_only_the_commands_it_needs(locked_redis) -> None:
    url = f"redis://127.0.0.1:{locked_redis.port}/0"
    admin = aioredis.Redis.from_url(url, password=PASSWORD)
    user, secret = f"intent-{uuid.uuid4().hex[:6]}", "acl-pass"
    await admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{secret}", "~iw:*", "resetchannels",
        "+@read", "+@write", "+@scripting", "+ping", "+@connection", "-@dangerous", "-flushall")
    try:
        store = RedisWindowStore.from_settings(
            load_settings(redis_url=url, redis_username=user, redis_password=secret,
                          key_prefix="iw"))
        await store.start()
        try:
            assert len((await store.append({"acl-u": [ev("a", "acl-u")]}))["acl-u"]) == 1
        finally:
            await store.stop()
        # the same user cannot touch keys outside its prefix
        other = RedisWindowStore.from_settings(
            load_settings(redis_url=url, redis_username=user, redis_password=secret,
                          key_prefix="other"))
        await other.start()
        try:
            with pytest.raises(StoreError, match="(?i)NOPERM|no permissions"):
                await other.append({"u": [ev("a", "u")]})
        finally:
            await other.stop()
    finally:
        await admin.execute_command("ACL", "DELUSER", user)
        keys = [k async for k in admin.scan_iter(match="iw:*")]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()


@pytest.mark.parametrize("secret", [None, "hmac-key"])
def test_forget_command_deletes_a_users_state(redis_url, monkeypatch, secret) -> None:
    # a plain test: the command runs its own event loop
    prefix = f"f{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("INTENT_REDIS_URL", redis_url)
    monkeypatch.setenv("INTENT_KEY_PREFIX", prefix)
    if secret:
        monkeypatch.setenv("INTENT_KEY_SECRET", secret)
    keys = KeyBuilder(prefix, secret.encode() if secret else None)

    def all_user_keys(user: str) -> tuple[str, ...]:
        # window, payloads, version, cooldowns, scores waiting for their outcome
        return (*keys.user_keys(user), keys.user_key(user, "a"), keys.user_key(user, "o"))

    async def setup() -> None:
        store = RedisWindowStore.from_settings(load_settings())
        await store.start()
        await store.append({"alice": [ev("a", "alice")], "bob": [ev("b", "bob")]})
        await RedisDetectorState(store).save_cooldowns({"alice": {"bot_cadence": [(T0, "x")]}})
        outcomes = RedisOutcomeState.beside(store)
        await outcomes.start()
        pending = Pending("0" * 32, keys.tag("alice"), "a", T0, 600_000, 0.5, ("m", "1"))
        bobs = Pending("1" * 32, keys.tag("bob"), "b", T0, 600_000, 0.5, ("m", "1"))
        await outcomes.write(Writes(
            add={p.tag: {p.score_id: pack(p)} for p in (pending, bobs)},
            due_add={("clickstream", 0): [(p.due_ms, due_member(p.score_id, p.tag))
                                          for p in (pending, bobs)]}))
        assert await store.client.exists(*all_user_keys("alice")) == 5
        if secret:  # pseudonymised: no raw user id in any key
            assert not [k async for k in store.client.scan_iter(match=f"{prefix}:*alice*")]
        await store.stop()

    async def check() -> tuple[int, int]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            due = await client.zrange(f"{prefix}:od:clickstream:0", 0, -1)
            assert due == [due_member("1" * 32, keys.tag("bob")).encode()]  # alice's is gone
            return (await client.exists(*all_user_keys("alice")),
                    await client.exists(*keys.user_keys("bob")))
        finally:
            await client.delete(*all_user_keys("bob"))
            await client.aclose()

    asyncio.run(setup())
    result = CliRunner().invoke(main, ["forget", "alice"])
    assert result.exit_code == 0, result.output
    assert "forgot alice" in result.output
    assert asyncio.run(check()) == (0, 3)  # alice gone, bob untouched
