"""The README's commands, run in order against a broker and Redis this test starts.

The fenced ``bash`` blocks of README.md are read in order. An HTML comment right before a
block says how it runs:

- ``<!-- readme-test: setup -->``: set-up commands (``./bootstrap``), already done: not run.
- ``<!-- readme-test: services -->``: the block starts the broker and Redis; the test's own,
  on free ports, stand in, and their addresses are exported as ``stack`` prints them.
- ``<!-- readme-test: background -->``: long-running commands, started in the background and
  stopped (SIGTERM) at the end; for ``intent-worker run`` the test waits until ``/ready``
  answers 200.
- ``<!-- readme-test: skip (REASON) -->``: not run, for the reason given.
- no comment: each command runs in the foreground, in order, and must exit 0.

A block that names a file under ``../shared/`` (the workspace's data, not part of a clone) is
not run when that file is absent. Every command of every block, run or not, must name an
existing ``intent-worker`` command and options, or an importable ``python -m`` module.
The commands run in a scratch directory laid out like a clone (``.venv``, ``worker``,
``loadtest``, ``schemas``, and ``../shared`` when present), so what they write stays there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from tests.e2e.helpers import wait_ready
from worker.cli import main
from worker.ops.stack import Process, free_port, start_redis, start_tansu

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
VENV_BIN = Path(sys.prefix) / "bin"
_BLOCK = re.compile(r"(?:<!--\s*readme-test:\s*(?P<mark>.*?)\s*-->\s*\n)?```bash\n(?P<body>.*?)```",
                    re.DOTALL)
_MARKS = ("setup", "services", "background", "skip")


@dataclass(frozen=True)
class Block:
    mark: str  # "" (run), or one of _MARKS
    reason: str
    commands: tuple[str, ...]


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for m in _BLOCK.finditer(text):
        mark, _, reason = (m["mark"] or "").partition(" ")
        assert mark in ("", *_MARKS), f"unknown readme-test mark {m['mark']!r}"
        joined = m["body"].replace("\\\n", " ")
        commands = tuple(line.strip() for line in joined.splitlines()
                         if line.strip() and not line.strip().startswith("#"))
        blocks.append(Block(mark, reason.strip(" ()"), commands))
    return blocks


def _words(command: str) -> list[str]:
    words = shlex.split(command, comments=True)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value prefixes
        words.pop(0)
    return words


def check_command_exists(command: str) -> None:
    """The ``intent-worker`` subcommand and its options, or the ``python -m`` module, exist."""
    for part in re.split(r"\s&&\s", command):
        words = _words(part)
        if not words:
            continue
        prog = Path(words[0]).name
        if prog == "intent-worker":
            if words[1:2] in (["--help"], ["--version"]):
                continue
            assert len(words) > 1 and words[1] in main.commands, f"no command in {part!r}"
            cmd = main.commands[words[1]]
            known = {o for p in cmd.params if isinstance(p, click.Option)
                     for o in (*p.opts, *p.secondary_opts)}
            for w in words[2:]:
                if w.startswith("--"):
                    assert w.split("=")[0] in known | {"--help"}, f"{part!r}: no option {w}"
        elif prog == "python" and words[1:2] == ["-m"]:
            assert importlib.util.find_spec(words[2]) is not None, f"no module {words[2]}"


def test_every_readme_command_exists() -> None:
    blocks = readme_blocks(README.read_text())
    assert any(b.mark == "" for b in blocks) and any(b.mark == "background" for b in blocks)
    for block in blocks:
        if block.mark == "skip":
            assert block.reason, "a skipped README block says why"
        for command in block.commands:
            check_command_exists(command)


def test_the_set_up_commands_are_the_documented_ones() -> None:
    setup = [c for b in readme_blocks(README.read_text()) if b.mark == "setup" for c in b.commands]
    assert "./bootstrap && .venv/bin/intent-worker demo" in setup
    assert any(c.startswith("./bootstrap && ") and c.endswith(".venv/bin/python -m pytest")
               for c in setup)


# -- the walk-through ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A fresh broker and Redis, as ``intent-worker stack`` would start them."""
    logs = tmp_path_factory.mktemp("readme-services")
    tansu = start_tansu(log_path=logs / "tansu.log")
    redis: Process | None = None
    try:
        redis = start_redis(workdir=logs)
        yield {"INTENT_KAFKA_BOOTSTRAP": f"127.0.0.1:{tansu.port}",
               "INTENT_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0"}
    finally:
        if redis is not None:
            redis.stop()
        tansu.stop()


def _clone(root: Path) -> Path:
    """A scratch directory laid out like a clone with its set-up done."""
    clone = root / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(Path(sys.prefix))
    for name in ("worker", "loadtest", "schemas"):
        (clone / name).symlink_to(REPO / name)
    if (REPO.parent / "shared").is_dir():
        (root / "shared").symlink_to(REPO.parent / "shared")
    return clone


def _check_output(command: str, out: str) -> None:
    """What a successful run of some commands must also print."""
    if "loadtest.score_stats" in command:
        stats = json.loads(out[out.index("{"):])
        assert stats["events_covered"] == stats["expected"], stats
        assert stats["covered_more_than_once"] == 0, stats
    if "--publish-to" in command:
        assert re.search(r"re-published [1-9]\d* messages", out), out
    elif "intent-worker evaluate" in command:
        assert re.search(r"\b[1-9]\d* examples of", out), out


@pytest.mark.skipif(not (VENV_BIN / "intent-worker").exists(),
                    reason="needs the project's virtual environment (./bootstrap)")
def test_the_readme_runs_in_order(services: dict[str, str], tmp_path: Path) -> None:
    clone = _clone(tmp_path)
    web_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENT_")}
    env |= services | {"INTENT_WEB_PORT": str(web_port), "PYTHONPATH": str(REPO)}
    background: list[subprocess.Popen] = []
    ran: list[str] = []
    try:
        for block in readme_blocks(README.read_text()):
            names_shared = any("../shared/" in c for c in block.commands)
            missing = [w for c in block.commands for w in _words(c)
                       if w.startswith("../shared/") and not (clone / w).exists()]
            if block.mark in ("setup", "services", "skip") or (names_shared and missing):
                continue
            for command in block.commands:
                if block.mark == "background":
                    log = tmp_path / f"background-{len(background)}.log"
                    with open(log, "wb") as out:
                        proc = subprocess.Popen(["bash", "-c", command], cwd=clone, env=env,
                                                stdout=out, stderr=subprocess.STDOUT,
                                                start_new_session=True)
                    background.append(proc)
                    if _words(command)[1:2] == ["run"]:
                        status = wait_ready(f"http://127.0.0.1:{web_port}/ready",
                                            timeout_s=180, proc=proc)
                        assert status == 200, (f"the worker was not ready in 180s (/ready: "
                                               f"{status}, exit code {proc.poll()}):\n"
                                               f"{log.read_text()[-3000:]}")
                else:
                    done = subprocess.run(["bash", "-c", command], cwd=clone, env=env,
                                          capture_output=True, text=True, timeout=420, check=False)
                    output = done.stdout + done.stderr
                    assert done.returncode == 0, \
                        f"{command}\nexit {done.returncode}:\n{output[-3000:]}"
                    _check_output(command, done.stdout)
                ran.append(command)
    finally:
        for proc in background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in background:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert any("publish" in c for c in ran) and any("score_stats" in c for c in ran), ran
