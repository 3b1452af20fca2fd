"""Events in from a file, validated exactly as the worker validates them.

``rees46`` rows go through the publishing adapter, are serialised with orjson (what
``intent-worker publish`` sends) and parsed by :func:`worker.events.parse_event`;
``jsonl`` lines are parsed as they are. Lines the worker would dead-letter are counted
by reason and left out; so are repeated ``event_id`` s of a user (the window store
ignores them: first write wins).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import orjson

from worker.errors import BadEvent, ConfigError
from worker.events import parse_event
from worker.events.adapters import read_jsonl, read_rees46
from worker.features.window import event_time_key

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "LoadResult", "data_fingerprint", "events_fingerprint",
           "load_events"]

DEFAULT_MAX_EVENT_BYTES = 65_536  # Settings.max_event_bytes default
Format = Literal["rees46", "jsonl"]


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Normalised events sorted by ``(ts, event_id)``, and what was left out."""

    events: list[dict]
    rejected: dict[str, int] = field(default_factory=dict)  # dead-letter reason -> lines
    duplicates: int = 0
    lines: int = 0  # rows / non-blank lines read
    source: str = ""
    format: str = ""
    fingerprint: str = ""  # "sha256:<hex>" of the file bytes

    @property
    def users(self) -> int:
        return len({e["user_id"] for e in self.events})

    def summary(self) -> dict:
        ts = [self.events[0]["ts"], self.events[-1]["ts"]] if self.events else [None, None]
        return {"source": self.source, "format": self.format, "fingerprint": self.fingerprint,
                "lines": self.lines, "events": len(self.events), "users": self.users,
                "rejected": dict(sorted(self.rejected.items())), "duplicates": self.duplicates,
                "first_ts": ts[0], "last_ts": ts[1]}


def load_events(path: str | os.PathLike[str], fmt: Format, *,
                max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> LoadResult:
    """Read, validate and sort a file of events; rejected lines are counted, not raised.

    A REES46 file the adapter cannot read (missing columns, unknown event type, rows out
    of time order) raises :class:`~worker.errors.ConfigError`, as ``publish`` would.
    """
    path = Path(path)
    if fmt not in ("rees46", "jsonl"):
        raise ConfigError(f"unknown format {fmt!r}, expected rees46 or jsonl")
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    rejected: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    events: list[dict] = []
    lines = duplicates = 0
    for raw in _raw_messages(path, fmt):
        lines += 1
        try:
            event = parse_event(raw, max_bytes=max_event_bytes)
        except BadEvent as exc:
            rejected[exc.reason] += 1
            continue
        key = (event["user_id"], event["event_id"])
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        events.append(event)
    events.sort(key=event_time_key)
    return LoadResult(events=events, rejected=dict(rejected), duplicates=duplicates,
                      lines=lines, source=str(path), format=fmt, fingerprint=data_fingerprint(path))


def _raw_messages(path: Path, fmt: Format) -> Iterator[bytes]:
    if fmt == "jsonl":
        yield from read_jsonl(path)
    else:
        for event in read_rees46(path):
            yield orjson.dumps(event)


def data_fingerprint(path: str | os.PathLike[str]) -> str:
    """``sha256:<hex>`` of a file's bytes (read in chunks)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def events_fingerprint(events: list[dict]) -> str:
    """``sha256:<hex>`` of events given in memory (orjson, sorted keys, in the given order)."""
    digest = hashlib.sha256()
    for event in events:
        digest.update(orjson.dumps(event, option=orjson.OPT_SORT_KEYS))
        digest.update(b"\n")
    return "sha256:" + digest.hexdigest()
