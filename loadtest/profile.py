"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) by function.

    python -m loadtest.profile bench-results/<run>/profile-b.txt [--top 25]

Each line of the file is ``frame;frame;...;frame COUNT`` (root first, frames like
``process (worker/scoring/pipeline.py:93)``). *Inclusive* share: samples with the function
anywhere on the stack; *own*: samples with it as the leaf. Line numbers are dropped so a
function's lines add up. ``--group`` rolls frames up by file instead; ``--parts`` attributes
each sample to a part of the worker (the table in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_key(frame: str, *, by_file: bool = False) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py path tail)``, or the file alone."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    for marker in ("site-packages/", "wt-bench/", "main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return path if by_file else f"{m['func']} ({path})"


def parse_collapsed(lines: Iterable[str], *, by_file: bool = False) -> tuple[Counter, Counter, int]:
    """(inclusive samples per key, own samples per key, total samples)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f]
        if frames and frames[0].startswith(("thread ", "process ")):
            frames = frames[1:]  # py-spy's optional thread/process root frames
        keys = [frame_key(f, by_file=by_file) for f in frames]
        total += count
        for k in set(keys):
            inclusive[k] += count
        if keys:
            own[keys[-1]] += count
    return inclusive, own, total


# The worker's parts, first match on the stack wins (docs/benchmarks.md, "Where the time goes").
WORKER_PARTS = (
    ("Redis windows: decode (cache + decode_window)", "DecodedEvents.window"),
    ("Redis windows: decode_window", "decode_window"),
    ("Redis windows: encode + pipelined round trip", "RedisWindowStore"),
    ("features: build_input", "build_input"),
    ("parse + validate", "parse_event"),
    ("score records", "score_record"),
    ("rest of Pipeline.prepare (anomaly price exchange, grouping)", "Pipeline.prepare"),
    ("rest of Pipeline.finish (anomaly detectors, records)", "Pipeline.finish"),
    ("rest of Pipeline.process", "Pipeline.process"),
    ("publish: Faust Topic.send per record", "BatchRunner.publish"),
    ("aiokafka producer (sender, socket writes)", "aiokafka/producer"),
    ("Faust consumer: fetcher", "Fetcher._fetcher"),
    ("Faust consumer: batching drain", "BatchingConsumer"),
    ("Faust consumer: on_message dispatch", "on_message"),
    ("Faust stream: take_events, acks", "faust/streams.py"),
    ("Faust commit", "commit"),
    ("model (executor thread)", "_run_model"),
    ("agent: take, acks, metrics", "BatchRunner"),
    ("event loop + mode services", "mode/"),
)
STARTUP = "_find_and_load"  # import frames: start-up, not steady state


def categorise(
    lines: Iterable[str], parts: Sequence[tuple[str, str]] = WORKER_PARTS, *, skip: str = STARTUP
) -> tuple[Counter, int]:
    """Samples per part (the first part whose marker is in a frame of the stack), without the
    stacks that contain ``skip``; the rest count as ``other``."""
    counts: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit() or (skip and skip in stack):
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        name = next((n for n, marker in parts if any(marker in f for f in frames)), "other")
        counts[name] += count
    return counts, total


def summarise_parts(lines: Iterable[str]) -> str:
    counts, total = categorise(lines)
    if not total:
        return "(no samples)"
    rows = [f"{100 * n / total:5.1f} %  {name}" for name, n in counts.most_common()]
    return f"{total} samples after start-up, by part of the worker:\n" + "\n".join(rows)


def summarise(lines: Iterable[str], *, top: int = 25, by_file: bool = False) -> str:
    inclusive, own, total = parse_collapsed(lines, by_file=by_file)
    if not total:
        return "(no samples)"
    out = [f"{total} samples", "", "own %  function (leaf frames)"]
    out += [f"{100 * n / total:5.1f}  {k}" for k, n in own.most_common(top)]
    out += ["", "incl % function (anywhere on the stack)"]
    out += [f"{100 * n / total:5.1f}  {k}" for k, n in inclusive.most_common(top)]
    return "\n".join(out)


def summarise_file(path: Path, *, top: int = 25) -> str:
    lines = path.read_text(errors="replace").splitlines()
    return (
        summarise_parts(lines)
        + "\n\n"
        + summarise(lines, top=top)
        + "\n\nby file (own %, incl %):\n"
        + summarise(lines, top=15, by_file=True)
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--group", action="store_true", help="by file instead of by function")
    ap.add_argument("--parts", action="store_true", help="by part of the worker (WORKER_PARTS)")
    args = ap.parse_args(argv)
    lines = args.path.read_text(errors="replace").splitlines()
    if args.parts:
        print(summarise_parts(lines))
    else:
        print(summarise(lines, top=args.top, by_file=args.group))
    return 0


if __name__ == "__main__":
    sys.exit(main())
