"""Reading what a chaos soak left behind: the workers' logs and the run's ``truth.json``.

Worker log lines carry the machine's local wall time (``[2026-12-05 07:22:47,789] [401]
[INFO] ...``); the checks work in the run's monotonic time. The two do not advance together:
on the VM that ran the full soak the wall clock gained 14.4 s on the monotonic clock within
8 monotonic seconds (no score record was seen meanwhile: the whole machine stalled) and
another second over the next few minutes. So a wall time maps onto the monotonic clock
through a :class:`Clock` of (monotonic, wall) anchors: those the run recorded (one a second,
``clock`` in ``truth.json``), or, for a run that recorded only ``t0``/``t0_wall_ms``, anchors
derived from the score records (each record's ``scored_at`` against the monotonic time the
run first saw its events covered).

A **rebalance** is one generation of the consumer group, read from the lines aiokafka logs in
every member: it starts at the first sign of it in any worker's log after the previous
generation was synced ("Revoking previously assigned partitions", "Heartbeat failed ...
rebalancing", a commit refused with UnknownMemberIdError, "local member_id was not
recognized") and ends when the last member logged "Successfully synced group <g> with
generation N".
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import asdict, astuple, dataclass
from datetime import datetime
from pathlib import Path

import orjson

from loadtest.chaos_checks import (
    Fault,
    Lifetime,
    Produced,
    Rebalance,
    attribute_duplicates,
    rebalance_summary,
)

__all__ = ["Clock", "Truth", "delivery_resends", "dump_truth", "load_truth", "log_events",
           "read_rebalances", "rebalances", "recheck", "sigkill_tail"]

LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \[\d+\] \[\w+\] (.*)$")
SYNCED = re.compile(r"Successfully synced group (\S+) with generation (\d+)")
JOINED = re.compile(r"Joined group '([^']+)' \(generation (\d+)\)")
STARTS = ("Revoking previously assigned partitions", "because it is rebalancing",
          "UnknownMemberIdError", "local member_id was not recognized")


def log_events(lines: Iterable[str], group: str) -> list[tuple[float, str, int | None]]:
    """``(wall seconds, what, generation)`` for the group lines of one log: ``what`` is
    ``start``, ``joined`` or ``synced``; the generation is None for ``start``."""
    out: list[tuple[float, str, int | None]] = []
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        # the local time of the machine that ran it (no zone in the log)
        wall = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()
        text = m.group(2)
        if (s := SYNCED.search(text)) and s.group(1) == group:
            out.append((wall, "synced", int(s.group(2))))
        elif (j := JOINED.search(text)) and j.group(1) == group:
            out.append((wall, "joined", int(j.group(2))))
        elif any(k in text for k in STARTS):
            out.append((wall, "start", None))
    return out


class Clock:
    """Wall seconds to monotonic seconds, piecewise through (monotonic, wall) anchors: from the
    last anchor at or before the wall time, at the rate of one, never past the next anchor's
    monotonic time (while the wall clock jumps, the monotonic one stands)."""

    def __init__(self, anchors: Iterable[tuple[float, float]]) -> None:
        pts = sorted(anchors, key=lambda a: a[1])
        self.mono = [m for m, _ in pts]
        self.wall = [w for _, w in pts]

    def to_mono(self, wall: float) -> float:
        i = bisect.bisect_right(self.wall, wall) - 1
        if i < 0:
            return self.mono[0] - (self.wall[0] - wall)
        mono = self.mono[i] + (wall - self.wall[i])
        return min(mono, self.mono[i + 1]) if i + 1 < len(self.mono) else mono

    @classmethod
    def from_scores(cls, scores: Iterable[tuple[str, list[str]]], first_cover: dict[str, float],
                    *, t0: float, t0_wall_ms: int, min_records: int = 20) -> Clock:
        """Anchors from score records, one per monotonic second with at least ``min_records``
        records first covered in it: the 90th percentile of ``scored_at`` minus the first
        cover of the record's first event, over the records that scored that event first (a
        record is published before it is seen, so the offset is at least that); seconds whose
        offset falls more than 0.5 s below the highest so far are left out."""
        firsts: dict[str, float] = {}
        stamped = []
        for stamp, ids in scores:
            if ids and ids[0] in first_cover:
                wall = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                stamped.append((wall, ids[0]))
                firsts[ids[0]] = min(firsts.get(ids[0], wall), wall)
        per_second: dict[int, list[float]] = {}
        for wall, eid in stamped:
            if wall == firsts[eid]:
                mono = first_cover[eid]
                per_second.setdefault(int(mono), []).append(wall - mono)
        anchors = [(t0, t0_wall_ms / 1000)]
        highest = t0_wall_ms / 1000 - t0
        for sec, offs in sorted(per_second.items()):
            if len(offs) < min_records or sec <= t0:
                continue
            offs.sort()
            off = offs[int(len(offs) * 0.9)]
            # a second after a broker pause is all backlog, stamped before the reader could
            # see it: the wall clock gains on the monotonic one (a stall), it does not lag
            if off >= highest - 0.5:
                anchors.append((sec + 0.5, sec + 0.5 + off))
                highest = max(highest, off)
        return cls(anchors)


def rebalances(events: Iterable[tuple[float, str, int | None]],
               clock: Clock) -> list[Rebalance]:
    """The group's generations from the log events of all its members, in monotonic time."""
    evs = sorted(events, key=lambda e: e[0])
    synced: dict[int, float] = {}
    joined: dict[int, float] = {}
    for wall, what, gen in evs:
        if what == "synced" and gen is not None:
            synced[gen] = max(synced.get(gen, wall), wall)
        elif what == "joined" and gen is not None:
            joined[gen] = min(joined.get(gen, wall), wall)
    starts = [w for w, what, _ in evs if what == "start"]
    out: list[Rebalance] = []
    previous_end = float("-inf")
    for gen in sorted(synced):
        first = joined.get(gen, synced[gen])
        signs = [w for w in starts if previous_end < w <= first]
        start = min(signs) if signs else first
        out.append(Rebalance(gen, clock.to_mono(start), clock.to_mono(synced[gen])))
        previous_end = synced[gen]
    return out


def read_rebalances(logs: Iterable[Path], group: str, clock: Clock) -> list[Rebalance]:
    events = [e for p in logs
              for e in log_events(p.read_text(errors="replace").splitlines(), group)]
    return rebalances(events, clock)


def delivery_resends(logs: Iterable[Path], topics: dict[str, str],
                     families: dict[str, str]) -> dict[str, int]:
    """Records that failed deliveries retried (the workers' log lines), per family: an
    upper bound of records sent twice by one process."""
    out = dict.fromkeys(families.values(), 0)
    pattern = re.compile(r"delivering (\d+) records to (.+?) failed")
    for path in logs:
        for m in pattern.finditer(path.read_text(errors="replace")):
            for key, topic in topics.items():
                if key in families and topic in m.group(2):
                    out[families[key]] += int(m.group(1))
    return out


def sigkill_tail(records: Iterable[dict], stamp: str, lifetimes: Iterable[Lifetime]) -> int:
    """An upper bound of the records SIGKILLed lifetimes published after their last scrape:
    records of any worker stamped (field ``stamp``) from 2 s before that scrape to the kill."""
    spans = [(lt.last_scrape_wall_ms or 0, lt.ended_wall_ms or 0)
             for lt in lifetimes if lt.end_kind == "sigkill"]
    if not spans:
        return 0
    n = 0
    for r in records:
        t = int(datetime.fromisoformat(r[stamp].replace("Z", "+00:00")).timestamp() * 1000)
        n += any(a - 2000 <= t <= b for a, b in spans)
    return n


def dump_truth(path: Path, *, t0: float, t0_wall_ms: int, clock: list[tuple[float, int]],
               produced: list[Produced], faults: list[Fault], lifetimes: list[Lifetime],
               first_cover: dict[str, float], scores: list[dict]) -> None:
    """What the run recorded, for checking it again or looking into a failed check afterwards
    (with each score record's ``scored_at`` and event ids)."""
    truth = {"t0": t0, "t0_wall_ms": t0_wall_ms, "clock": clock,
             "produced": [list(astuple(m)) for m in produced],
             "faults": [asdict(f) for f in faults], "lifetimes": [asdict(lt) for lt in lifetimes],
             "first_cover": first_cover,
             "scores": [(r["scored_at"], r["event_ids"]) for r in scores]}
    path.write_bytes(orjson.dumps(truth, option=orjson.OPT_NON_STR_KEYS))


@dataclass(slots=True)
class Truth:
    """What ``truth.json`` holds, as the checks take it."""

    t0: float
    t0_wall_ms: int
    produced: list[Produced]
    faults: list[Fault]
    lifetimes: list[Lifetime]
    first_cover: dict[str, float]
    scores: list[tuple[str, list[str]]]
    clock: list[tuple[float, int]]  # (monotonic, wall ms), one a second; empty when not recorded

    def wall_clock(self) -> Clock:
        if self.clock:
            return Clock([(self.t0, self.t0_wall_ms / 1000),
                          *((m, w / 1000) for m, w in self.clock)])
        return Clock.from_scores(self.scores, self.first_cover, t0=self.t0,
                                 t0_wall_ms=self.t0_wall_ms)


def load_truth(path: Path) -> Truth:
    raw = orjson.loads(path.read_bytes())
    faults = []
    for f in raw["faults"]:
        f = {**f, "committed": {int(p): o for p, o in f["committed"].items()},
             "log_end": {int(p): o for p, o in f["log_end"].items()}}
        faults.append(Fault(**f))
    lifetimes = [Lifetime(**{**lt, "rss": [tuple(s) for s in lt["rss"]]})
                 for lt in raw["lifetimes"]]
    return Truth(raw["t0"], raw["t0_wall_ms"], [Produced(*m) for m in raw["produced"]],
                 faults, lifetimes, raw["first_cover"],
                 [(at, ids) for at, ids in raw["scores"]],
                 [(m, w) for m, w in raw.get("clock", [])])


def recheck(workdir: Path, group: str) -> dict:
    """The saved run's report with the duplicates check done again from ``truth.json`` and
    the worker logs (rebalance-aware in-flight ranges) and each fault's rebalances added; the
    checks that need the broker or Redis (windows, alerts, dead letters, counters) and the RSS
    check stay as the run reported them."""
    report = orjson.loads((workdir / "report.json").read_bytes())
    truth = load_truth(workdir / "truth.json")
    logs = sorted(workdir.glob("w[0-9]-*.log"))
    drained = truth.t0 + report["drained_s"]
    every = read_rebalances(logs, group, truth.wall_clock())
    rebs = [r for r in every if r.start <= drained]  # later ones: the workers stopping
    counts: dict[str, int] = {}
    for _, ids in truth.scores:
        for eid in ids:
            counts[eid] = counts.get(eid, 0) + 1
    narrow = attribute_duplicates(counts, truth.produced, truth.faults)
    dups = attribute_duplicates(counts, truth.produced, truth.faults, rebs)
    dups["without_rebalances"] = {k: narrow[k] for k in ("unexplained", "per_fault_kind")}
    before = {p for c in report["checks"].values() for p in c["problems"]}
    report["checks"]["duplicates"] = dups
    for row, reb in zip(report["faults"], rebalance_summary(truth.faults, rebs), strict=True):
        row.update(reb)
    report["rebalances"] = {"before_first_fault": sum(r.start < truth.faults[0].at for r in rebs),
                            "after_drained": len(every) - len(rebs),
                            "during_faults": sum(r.start >= truth.faults[0].at for r in rebs)}
    others = [p for p in report["problems"] if p not in before]
    report["problems"] = [p for c in report["checks"].values() for p in c["problems"]] + others
    report["ok"] = not report["problems"]
    report["rechecked"] = {"from": ["truth.json", "report.json", *(p.name for p in logs)],
                           "redone": ["duplicates", "faults[].rebalances"]}
    return report
