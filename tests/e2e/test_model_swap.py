"""A model swap during a running stream: new version between batches, broken dirs refused."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import orjson

from tests.e2e.helpers import make_events, produce, read_topic, worker_env, worker_process


def tiny_model_dir(root: Path, version: str, seed: int) -> Path:
    import torch

    from tests.support.tiny_model import TINY_DIM, write_tiny_encoder
    from worker.features import FEATURE_NAMES
    from worker.model import ModelConfig, save_model_dir
    from worker.model.head import FusionHead

    torch.manual_seed(seed)
    encoder = write_tiny_encoder(root / f"enc-{version}", seed=seed)
    head = FusionHead(TINY_DIM, len(FEATURE_NAMES), hidden=16)
    config = ModelConfig(name="tiny", version=version, text_dim=TINY_DIM, max_tokens=64,
                         max_chars=400, head_hidden=16)
    return save_model_dir(root / f"model-{version}", head=head, config=config, encoder=encoder)


def point(link: Path, target: Path) -> None:
    """Switch a symlink atomically, as a deployment would."""
    tmp = link.with_name(link.name + ".tmp")
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)


async def test_new_model_version_is_swapped_in_without_a_restart(kafka_bootstrap, redis_url,
                                                                 tmp_path):
    v1 = tiny_model_dir(tmp_path, "1.0.0", seed=1)
    v2 = tiny_model_dir(tmp_path, "2.0.0", seed=2)
    broken = tmp_path / "model-broken"
    shutil.copytree(v2, broken)
    (broken / "head.safetensors").write_bytes(b"not a tensor file")
    current = tmp_path / "current"
    point(current, v1)
    env = worker_env(kafka_bootstrap, redis_url, INTENT_MODEL_PATH=str(current),
                     INTENT_MODEL_POLL_S="0.5")
    topic = env["INTENT_TOPIC_EVENTS"]
    events = make_events(300, users=30, seed=11)

    def versions_for(records, ids):
        return {r["model"]["version"] for r in records if set(r["event_ids"]) & ids}

    def batch(evs):
        return [(e["user_id"].encode(), orjson.dumps(e)) for e in evs]

    async def wait_covered(ids):
        return await read_topic(kafka_bootstrap, env["INTENT_TOPIC_SCORES"],
                                until=lambda rs: {i for r in rs for i in r["event_ids"]} >= ids,
                                timeout_s=120)

    log = tmp_path / "worker.log"
    with worker_process(env, log) as proc:
        first = {e["event_id"] for e in events[:100]}
        await produce(kafka_bootstrap, topic, batch(events[:100]))
        records = await wait_covered(first)
        assert versions_for(records, first) == {"1.0.0"}, log.read_text()[-2000:]

        point(current, broken)  # refused: v1 keeps serving
        await asyncio.sleep(2.0)
        second = {e["event_id"] for e in events[100:200]}
        await produce(kafka_bootstrap, topic, batch(events[100:200]))
        records = await wait_covered(first | second)
        assert versions_for(records, second) == {"1.0.0"}
        assert "model reload refused" in log.read_text()

        point(current, v2)
        await asyncio.sleep(3.0)
        third = {e["event_id"] for e in events[200:]}
        await produce(kafka_bootstrap, topic, batch(events[200:]))
        records = await wait_covered(first | second | third)
        assert versions_for(records, third) == {"2.0.0"}, log.read_text()[-2000:]
        assert proc.poll() is None
        covered = [i for r in records for i in r["event_ids"]]
        assert sorted(covered) == sorted(e["event_id"] for e in events)  # each exactly once
