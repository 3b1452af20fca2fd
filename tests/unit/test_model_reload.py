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
