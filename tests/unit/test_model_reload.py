"""ModelReloader.watch: a changed model directory, or SIGHUP, swaps the model in."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from worker.model.reload import ModelReloader


class Loaded:
    def __init__(self, version: str) -> None:
        self.version = version


class Swaps:
    """The versions swapped in, and a wait for the next one."""

    def __init__(self) -> None:
        self.versions: list[str] = []
        self._swapped = asyncio.Event()

    def __call__(self, model: Loaded) -> None:
        self.versions.append(model.version)
        self._swapped.set()

    async def next(self) -> list[str]:
        await asyncio.wait_for(self._swapped.wait(), timeout=5)
        self._swapped.clear()
        return self.versions


def reloader_for(path: Path, swaps: Swaps) -> ModelReloader:
    loads = iter(range(2, 100))
    return ModelReloader(path, load=lambda p: Loaded(f"{next(loads)}.0"), on_swap=swaps,
                         current_version="1.0")


async def test_watch_swaps_in_a_changed_directory_and_reloads_on_sighup(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    swaps = Swaps()
    reloader = reloader_for(tmp_path, swaps)
    watch = asyncio.ensure_future(reloader.watch(0.02))
    try:
        await asyncio.sleep(0.1)
        assert swaps.versions == []  # unchanged: nothing loaded
        (tmp_path / "config.json").write_text('{"version": "2"}')
        assert await swaps.next() == ["2.0"]
        os.kill(os.getpid(), signal.SIGHUP)  # forced, though unchanged
        assert await swaps.next() == ["2.0", "3.0"]
    finally:
        watch.cancel()
        reloader.close()
    await asyncio.gather(watch, return_exceptions=True)


async def test_without_polling_only_sighup_reloads(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    swaps = Swaps()
    reloader = reloader_for(tmp_path, swaps)
    watch = asyncio.ensure_future(reloader.watch(0))
    try:
        await asyncio.sleep(0.05)
        (tmp_path / "config.json").write_text('{"version": "2"}')
        await asyncio.sleep(0.1)
        assert swaps.versions == [] and not watch.done()
        os.kill(os.getpid(), signal.SIGHUP)
        assert await swaps.next() == ["2.0"]
    finally:
        watch.cancel()
        reloader.close()
    await asyncio.gather(watch, return_exceptions=True)


async def test_a_symlink_switch_swaps_a_text_model_for_a_pooled_one_and_back(
        tmp_path: Path) -> None:
    """Real directories of both kinds behind one symlink: each switch loads the other kind."""
    from tests.support.tiny_model import write_tiny_encoder, write_tiny_pooled_model
    from worker.model import init_default, load_model
    from worker.model.event_model import EventVectorModel
    from worker.model.intent import IntentModel

    encoder = write_tiny_encoder(tmp_path / "encoder", max_positions=64)
    pooled = write_tiny_pooled_model(tmp_path / "pooled", encoder, version="2.0.0")
    text = init_default(tmp_path / "text")
    current = tmp_path / "current"
    current.symlink_to(text)
    served: list[object] = []
    reloader = ModelReloader(current, load=lambda p: load_model(p, device="cpu"),
                             on_swap=served.append, current_version="0.0.0")
    try:
        for target, kind in ((pooled, EventVectorModel), (text, IntentModel)):
            tmp = tmp_path / "current.tmp"
            tmp.symlink_to(target)
            tmp.replace(current)
            assert await reloader.check()
            assert isinstance(served[-1], kind)
        assert reloader.last_error is None
    finally:
        reloader.close()
