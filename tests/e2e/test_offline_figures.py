"""The serving model's offline figures on /metrics: from its directory's metrics.json at
start-up, replaced at a hot swap, absent for a model directory without them (tiny models,
the worker as a process on the real broker and Redis)."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from pathlib import Path

from tests.e2e.helpers import wait_log, worker_env, worker_process

READY = "[^Worker]: Ready"


def tiny_model_dir(root: Path, version: str, figures: dict | None) -> Path:
    import torch

    from tests.support.tiny_model import TINY_DIM, write_tiny_encoder
    from worker.features import FEATURE_NAMES
    from worker.model import ModelConfig, save_model_dir
    from worker.model.head import FusionHead

    torch.manual_seed(1)
    encoder = write_tiny_encoder(root / f"enc-{version}", seed=1)
    head = FusionHead(TINY_DIM, len(FEATURE_NAMES), hidden=16)
    config = ModelConfig(name="tiny", version=version, text_dim=TINY_DIM, max_tokens=64,
                         max_chars=400, head_hidden=16)
    path = save_model_dir(root / f"model-{version}", head=head, config=config, encoder=encoder)
    if figures is not None:
        (path / "metrics.json").write_text(json.dumps({"val": {"bert": figures}}))
    return path


def point(link: Path, target: Path) -> None:
    tmp = link.with_name(link.name + ".tmp")
    tmp.symlink_to(target)
    os.replace(tmp, link)


def offline_lines(url: str) -> list[str]:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback test URL
        text = resp.read().decode()
    return sorted(ln for ln in text.splitlines() if ln.startswith("intent_model_offline_"))


async def test_offline_figures_follow_the_serving_model(kafka_bootstrap, redis_url,
                                                        tmp_path) -> None:
    v1 = tiny_model_dir(tmp_path, "1.0.0", {"pr_auc": 0.25, "roc_auc": 0.75})
    v2 = tiny_model_dir(tmp_path, "2.0.0", None)
    v3 = tiny_model_dir(tmp_path, "3.0.0", {"roc_auc": 0.5})
    current = tmp_path / "current"
    point(current, v1)
    env = worker_env(kafka_bootstrap, redis_url, INTENT_MODEL_PATH=str(current),
                     INTENT_MODEL_POLL_S="0.3")
    url = f"http://127.0.0.1:{env['INTENT_WEB_PORT']}/metrics"
    log = tmp_path / "worker.log"
    loop = asyncio.get_running_loop()
    seen = []
    with worker_process(env, log) as proc:
        assert await wait_log(log, READY, timeout_s=90, proc=proc), log.read_text()[-3000:]
        seen.append(await loop.run_in_executor(None, offline_lines, url))
        for target, version in ((v2, "2.0.0"), (v3, "3.0.0")):
            point(current, target)
            assert await wait_log(log, f"-> {version}", timeout_s=60, proc=proc)
            seen.append(await loop.run_in_executor(None, offline_lines, url))
    assert seen == [
        ['intent_model_offline_pr_auc{model="tiny",version="1.0.0"} 0.25',
         'intent_model_offline_roc_auc{model="tiny",version="1.0.0"} 0.75'],
        [],
        ['intent_model_offline_roc_auc{model="tiny",version="3.0.0"} 0.5'],
    ]
