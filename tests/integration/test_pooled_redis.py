"""The pooled model against a real Redis: the worker's pipeline shares event vectors through
the store (a restarted worker reads them instead of encoding), and ``embed-catalog`` writes
exactly the vectors the worker then finds."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from tests.support.tiny_model import write_tiny_encoder, write_tiny_pooled_model
from worker.cli import main
from worker.model import load_model
from worker.model.catalog import catalogue_phrases
from worker.scoring.pipeline import Message, Pipeline
from worker.settings import load_settings
from worker.vectors import RedisVectorStore
from worker.windows import RedisWindowStore


@pytest.fixture(scope="module")
def pooled_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pooled")
    encoder = write_tiny_encoder(root / "encoder", max_positions=64)
    return write_tiny_pooled_model(root / "model", encoder)


PRODUCTS = [{"id": f"p{i}", "category": "electronics.smartphone", "brand": f"brand{i}",
             "price": 100.0 + 50 * i, "currency": "USD"} for i in range(6)]


def messages(n: int, offset: int = 0) -> list[Message]:
    out = []
    for i in range(n):
        event = {"event_id": f"e{offset + i}", "user_id": f"u{i % 4}", "event_type": "view",
                 "ts": 1_700_000_000_000 + (offset + i) * 1000, "product": PRODUCTS[i % 6]}
        out.append(Message(f"u{i % 4}".encode(), orjson.dumps(event), "events", 0, offset + i,
                           event["ts"]))
    return out


async def test_a_restarted_worker_reads_the_vectors_instead_of_encoding(
        pooled_dir: Path, redis_url: str, prefix: str, admin: aioredis.Redis) -> None:
    settings = load_settings(redis_url=redis_url, key_prefix=prefix, anomaly_enabled=False)
    results = []
    for run in range(2):  # two processes, one after the other: new LRU, same Redis
        async with RedisWindowStore.from_settings(settings) as store, \
                RedisVectorStore.from_settings(settings) as vectors:
            model = load_model(pooled_dir, device="cpu", vector_store=vectors)
            pipeline = Pipeline(settings, store=store, scorer=model)
            result = await pipeline.process(messages(12, offset=100 * run))
            results.append((result, model.vectors))
    first, second = results
    assert len(first[0].scores) == len(second[0].scores) == 4  # one record per user
    assert first[1].encoded == 6 and first[1].encoder_calls == 1  # 6 phrases, one call
    assert second[1].encoded == 0 and second[1].store_hits == 6
    keys = [k async for k in admin.scan_iter(match=f"{prefix}:vec:*")]
    assert len(keys) == 6
    record = orjson.loads(first[0].scores[0].value)
    assert record["model"]["name"] == "tiny-pooled" and 0 < record["score"] < 1


def test_embed_catalog_writes_what_the_worker_looks_up(
        pooled_dir: Path, redis_url: str, prefix: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    catalogue = tmp_path / "products.jsonl"
    lines = [orjson.dumps(p).decode() for p in PRODUCTS]
    lines.insert(2, '{"title": "no id"}')
    lines.insert(4, "[1, 2]")
    catalogue.write_text("\n".join(lines) + "\n\n")
    monkeypatch.setenv("INTENT_REDIS_URL", redis_url)
    monkeypatch.setenv("INTENT_KEY_PREFIX", prefix)
    runner = CliRunner()
    result = runner.invoke(main, ["embed-catalog", str(catalogue), "--model", str(pooled_dir)])
    assert result.exit_code == 0, result.output
    assert "6 products, 24 phrases: 24 encoded and stored, 0 already there" in result.output
    assert "2 lines skipped" in result.output
    assert f"{catalogue}:3: skipped: not a product" in result.output
    assert f"{catalogue}:5: skipped: expected a JSON object" in result.output
    again = runner.invoke(main, ["embed-catalog", str(catalogue), "--model", str(pooled_dir)])
    assert "0 encoded and stored, 24 already there" in again.output

    async def worker_lookup() -> tuple[int, int]:
        settings = load_settings(redis_url=redis_url, key_prefix=prefix)
        async with RedisVectorStore.from_settings(settings) as store:
            model = load_model(pooled_dir, device="cpu", vector_store=store)
            phrases = catalogue_phrases(PRODUCTS, price=model.phrase_price)
            await model.vectors.vectors(phrases)
            keys = [k async for k in store.client.scan_iter(match=f"{prefix}:vec:*")]
            await store.client.delete(*keys)
            return model.vectors.store_hits, model.vectors.encoded

    assert asyncio.run(worker_lookup()) == (24, 0)


def test_embed_catalog_refuses_a_text_model_and_bad_flags(tmp_path: Path) -> None:
    catalogue = tmp_path / "products.jsonl"
    catalogue.write_text(orjson.dumps(PRODUCTS[0]).decode() + "\n")
    from worker.model import init_default

    text_dir = init_default(tmp_path / "text")
    runner = CliRunner()
    text_model = runner.invoke(main, ["embed-catalog", str(catalogue), "--model", str(text_dir)])
    assert text_model.exit_code != 0 and "(kind text)" in text_model.output
    bad = runner.invoke(main, ["embed-catalog", str(catalogue), "--event-types", "view,click"])
    assert bad.exit_code != 0 and "unknown event types ['click']" in bad.output


@pytest.mark.parametrize("secret", [None, "s3cret"])
def test_explain_reads_the_window_the_worker_scored_and_gives_its_score(
        pooled_dir: Path, redis_url: str, prefix: str, secret: str | None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's pipeline scores a batch (pseudonymised keys or not); ``explain`` then reads
    the same window from Redis and gives the published score, with events newest first and an
    explanation that adds up; an unknown user exits 1 with a message."""
    import asyncio
    import math

    overrides = {"key_secret": secret} if secret else {}
    settings = load_settings(redis_url=redis_url, key_prefix=prefix, anomaly_enabled=False,
                             **overrides)

    async def worker_batch() -> dict:
        async with RedisWindowStore.from_settings(settings) as store, \
                RedisVectorStore.from_settings(settings) as vectors:
            model = load_model(pooled_dir, device="cpu", vector_store=vectors)
            result = await Pipeline(settings, store=store, scorer=model).process(messages(12))
        return {orjson.loads(o.value)["user_id"]: orjson.loads(o.value) for o in result.scores}

    published = asyncio.run(worker_batch())
    monkeypatch.setenv("INTENT_REDIS_URL", redis_url)
    monkeypatch.setenv("INTENT_KEY_PREFIX", prefix)
    if secret:
        monkeypatch.setenv("INTENT_KEY_SECRET", secret)
    runner = CliRunner()
    result = runner.invoke(main, ["explain", "u1", "--model", str(pooled_dir), "--json"])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["score"] == pytest.approx(published["u1"]["score"], abs=1e-6)
    assert [e["event_id"] for e in report["window"]] == ["e9", "e5", "e1"]  # newest first
    exp = report["explanation"]
    total = (exp["baseline"]["logit"] + sum(f["contribution"] for f in exp["features"])
             + exp["other_features"] + exp["events_total"])
    assert total == pytest.approx(exp["logit"], abs=1e-6)
    assert 1 / (1 + math.exp(-exp["logit"])) == pytest.approx(report["score"], abs=1e-6)
    table = runner.invoke(main, ["explain", "u1", "--model", str(pooled_dir)])
    assert table.exit_code == 0 and "window, newest first" in table.output
    missing = runner.invoke(main, ["explain", "nobody", "--model", str(pooled_dir)])
    assert missing.exit_code == 1 and "no state for user 'nobody'" in missing.output
