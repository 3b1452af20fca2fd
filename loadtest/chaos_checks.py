"""The chaos soak's checks: pure functions of what the run recorded (no broker, no Redis).

``loadtest/chaos.py`` records the ground truth while it runs (every produced message's
partition, offset and acknowledgement time; every fault with the group's committed offsets
and the log ends at that moment; the first time each event was seen covered by a score
record; each worker lifetime's RSS samples and last metrics scrape) and hands it to these
functions, which turn it into the report. Each returns plain data, with a list of
``problems`` that is empty when the check holds.

Definitions (docs/chaos.md says the same):

* **Rebalances a fault set off**: the group does not rebalance in steady state, so every
  rebalance (a generation of the consumer group) that starts between a fault's start and the
  next fault's start is that fault's doing. The group is **stable again** at the end of the
  last of them (or at the fault's end when it set off none).
* **In flight at a fault**: per partition, the offsets from the group's committed offset
  taken just before the fault up to (not including) the partition's log end at the later of
  the fault's recovery and the end of the last rebalance it set off. Offsets consumed before
  a rebalance and not yet committed are handed to the next owner and read again; a
  redelivery can only repeat those.
* **Recovery time**: seconds from the fault's end (the replacement worker joined the group and
  got its partitions, Redis listening again, the broker continued) until every valid event
  the feeder sent before the fault's end is covered by a score record; 0 when they all were
  already.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DELIVERY_TIME_FIELDS", "Fault", "Lifetime", "Produced", "Rebalance", "alert_conflicts",
    "attribute_duplicates", "counters_vs_topics", "dead_letter_check", "fault_rebalances",
    "in_flight_ranges", "log_end_at", "rebalance_summary", "recovery_times", "rss_summary",
    "summarise_recoveries",
]

# alert fields that hold the publishing worker's clock, not the alert's contents
DELIVERY_TIME_FIELDS = ("detected_at",)


@dataclass(frozen=True, slots=True)
class Produced:
    """One message as the broker acknowledged it; ``event_id`` None for an invalid one."""

    event_id: str | None
    partition: int
    offset: int
    sent_at: float  # monotonic, when the feeder handed it to the producer
    acked_at: float  # monotonic, when the broker acknowledged it


@dataclass(slots=True)
class Fault:
    kind: str
    at: float  # monotonic, when the fault was applied
    end: float  # monotonic, when it was over (replacement ready, Redis listening, SIGCONT)
    committed: dict[int, int]  # the group's committed offsets just before the fault
    log_end: dict[int, int]  # the log-end offsets then
    detail: dict = field(default_factory=dict)
    recovered_at: float | None = None


@dataclass(slots=True)
class Lifetime:
    """One worker process from start to exit."""

    name: str
    pid: int
    started: float  # monotonic
    ended: float | None = None
    end_kind: str = "running"  # running, sigkill, sigterm, final
    # (monotonic, MiB, messages consumed by then as its last scrape said)
    rss: list[tuple[float, float, float]] = field(default_factory=list)
    last_scrape: dict[str, float] | None = None  # counter family -> summed value
    last_scrape_at: float | None = None  # monotonic
    last_scrape_wall_ms: int | None = None
    ended_wall_ms: int | None = None
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class Rebalance:
    """One generation of the consumer group (loadtest/chaos_record.py reads them from logs)."""

    generation: int
    start: float  # monotonic: the first sign of it in any member's log
    end: float  # monotonic: the last member synced this generation


def fault_rebalances(faults: Sequence[Fault],
                     rebalances: Sequence[Rebalance]) -> list[list[Rebalance]]:
    """Per fault (in the order given, which is the order applied), the rebalances that start
    at or after its start and before the next fault's start."""
    out: list[list[Rebalance]] = [[] for _ in faults]
    starts = [f.at for f in faults]
    for r in rebalances:
        i = bisect.bisect_right(starts, r.start) - 1
        if i >= 0:
            out[i].append(r)
    return out


def rebalance_summary(faults: Sequence[Fault],
                      rebalances: Sequence[Rebalance]) -> list[dict]:
    """Per fault: the rebalances it set off (their generations and start, end in seconds
    after the fault's end) and seconds from its end until the group was stable again."""
    out = []
    for f, rs in zip(faults, fault_rebalances(faults, rebalances), strict=True):
        stable = max([f.end, *(r.end for r in rs)])
        out.append({"rebalances": len(rs), "generations": [r.generation for r in rs],
                    "rebalance_spans_s": [[round(r.start - f.end, 1), round(r.end - f.end, 1)]
                                          for r in rs],
                    "stable_after_end_s": round(stable - f.end, 1)})
    return out


def in_flight_ranges(produced: Sequence[Produced], faults: Sequence[Fault],
                     rebalances: Sequence[Rebalance] = ()) -> list[dict[int, tuple[int, int]]]:
    """Per fault, per partition, ``[committed before the fault, log end at the later of its
    recovery and the end of the last rebalance it set off)``."""
    out = []
    for f, rs in zip(faults, fault_rebalances(faults, rebalances), strict=True):
        until = f.recovered_at if f.recovered_at is not None else f.end
        if rs:
            until = max(until, max(r.end for r in rs))
        end = log_end_at(produced, until)
        out.append({p: (f.committed.get(p, 0), end.get(p, 0)) for p in end})
    return out


def log_end_at(produced: Sequence[Produced], t: float) -> dict[int, int]:
    """Per partition, 1 + the highest offset acknowledged by monotonic time ``t``."""
    ends: dict[int, int] = {}
    for m in produced:
        if m.acked_at <= t and m.offset + 1 > ends.get(m.partition, 0):
            ends[m.partition] = m.offset + 1
    return ends


def recovery_times(produced: Sequence[Produced], first_cover: Mapping[str, float],
                   faults: Sequence[Fault], *, end_of_run: float) -> None:
    """Set each fault's ``recovered_at`` (see the module's definition); a valid event never
    covered counts as covered at ``end_of_run`` (the coverage check reports it)."""
    ordered = sorted((m for m in produced if m.event_id is not None), key=lambda m: m.sent_at)
    times = [m.sent_at for m in ordered]
    prefix_max: list[float] = []
    running = float("-inf")
    for m in ordered:
        running = max(running, first_cover.get(m.event_id, end_of_run))
        prefix_max.append(running)
    for f in faults:
        n = bisect.bisect_right(times, f.end)
        f.recovered_at = max(f.end, prefix_max[n - 1]) if n else f.end


def attribute_duplicates(cover_counts: Mapping[str, int], produced: Sequence[Produced],
                         faults: Sequence[Fault], rebalances: Sequence[Rebalance] = ()) -> dict:
    """Events covered more often than produced, each attributed to the first fault that had it
    in flight (:func:`in_flight_ranges`); those no fault explains are problems."""
    copies = Counter(m.event_id for m in produced if m.event_id is not None)
    where: dict[str, list[tuple[int, int]]] = {}
    for m in produced:
        if m.event_id is not None:
            where.setdefault(m.event_id, []).append((m.partition, m.offset))
    ranges = list(zip(faults, in_flight_ranges(produced, faults, rebalances), strict=True))
    per_kind: Counter[str] = Counter()
    per_fault: Counter[int] = Counter()
    unexplained: list[str] = []
    extra_covers = 0
    for eid, n in cover_counts.items():
        if n <= copies.get(eid, 0):
            continue
        extra_covers += n - copies[eid]
        for i, (f, rng) in enumerate(ranges):
            if any(rng.get(p, (0, 0))[0] <= o < rng.get(p, (0, 0))[1] for p, o in where[eid]):
                per_kind[f.kind] += 1
                per_fault[i] += 1
                break
        else:
            unexplained.append(eid)
    dups = sum(per_kind.values()) + len(unexplained)
    return {"events_scored_more_than_once": dups, "extra_covers": extra_covers,
            "per_fault_kind": dict(sorted(per_kind.items())),
            "per_fault": {str(i): n for i, n in sorted(per_fault.items())},
            "unexplained": len(unexplained),
            "problems": [f"{len(unexplained)} events scored more than once outside any fault's "
                         f"in-flight range, e.g. {sorted(unexplained)[:5]}"] if unexplained else []}


def alert_conflicts(alerts: Iterable[dict]) -> dict:
    """Alert ids delivered more than once, and those whose copies differ in anything but
    :data:`DELIVERY_TIME_FIELDS`."""
    by_id: dict[str, list[dict]] = {}
    for a in alerts:
        by_id.setdefault(a["alert_id"], []).append(
            {k: v for k, v in a.items() if k not in DELIVERY_TIME_FIELDS})
    repeated = {i: cs for i, cs in by_id.items() if len(cs) > 1}
    differing = sorted(i for i, cs in repeated.items() if any(c != cs[0] for c in cs[1:]))
    return {"alerts": sum(len(cs) for cs in by_id.values()), "alert_ids": len(by_id),
            "ids_delivered_more_than_once": len(repeated), "ids_with_differing_contents":
            len(differing), "ignored_fields": list(DELIVERY_TIME_FIELDS),
            "problems": [f"alert ids delivered with different contents: {differing[:5]}"]
            if differing else []}


def dead_letter_check(dead_letters: Iterable[dict], produced: Sequence[Produced],
                      topic: str) -> dict:
    """Every invalid message dead-lettered (by its partition and offset), no valid one."""
    got = Counter((d["partition"], d["offset"]) for d in dead_letters if d.get("topic") == topic)
    invalid = {(m.partition, m.offset) for m in produced if m.event_id is None}
    missing = invalid - set(got)
    wrong = set(got) - invalid
    problems = []
    if missing:
        problems.append(f"{len(missing)} invalid messages never dead-lettered, "
                        f"e.g. {sorted(missing)[:5]}")
    if wrong:
        problems.append(f"{len(wrong)} valid messages dead-lettered, e.g. {sorted(wrong)[:5]}")
    return {"invalid_produced": len(invalid), "dead_letters": sum(got.values()),
            "dead_lettered_more_than_once": sum(1 for n in got.values() if n > 1),
            "problems": problems}


def rss_summary(lifetimes: Sequence[Lifetime], *, warmup_events: int, margin: float,
                min_span_s: float) -> dict:
    """Per lifetime: the first RSS sample after it consumed ``warmup_events`` messages (its
    bounded caches can be full by then), the max and the last. Flat: the last within
    ``margin`` (a fraction) of that first sample; lifetimes with less than ``min_span_s`` of
    samples after the warm-up are reported, not judged."""
    rows, problems = [], []
    for lt in lifetimes:
        after = [(t, mib) for t, mib, consumed in lt.rss if consumed >= warmup_events]
        row = {"name": lt.name, "pid": lt.pid, "end": lt.end_kind,
               "seconds": round(((lt.ended or (lt.rss[-1][0] if lt.rss else lt.started))
                                 - lt.started), 1), "samples": len(lt.rss),
               "consumed": int(lt.rss[-1][2]) if lt.rss else 0}
        if lt.rss:
            row["max_mib"] = round(max(s[1] for s in lt.rss), 1)
        if after and after[-1][0] - after[0][0] >= min_span_s:
            first, last = after[0][1], after[-1][1]
            row.update(warm_at_s=round(after[0][0] - lt.started, 1),
                       first_after_warmup_mib=round(first, 1), last_mib=round(last, 1),
                       growth=round(last / first - 1, 3), flat=last <= first * (1 + margin))
            if not row["flat"]:
                problems.append(f"{lt.name}: RSS {first:.0f} -> {last:.0f} MiB "
                                f"(more than {margin:.0%})")
        else:
            row["judged"] = False
            if lt.rss:
                row["last_mib"] = round(lt.rss[-1][1], 1)
        rows.append(row)
    return {"warmup_events": warmup_events, "margin": margin, "min_span_s": min_span_s,
            "lifetimes": rows, "problems": problems}


def counters_vs_topics(lifetimes: Sequence[Lifetime], topic_counts: Mapping[str, int],
                       tail_bounds: Mapping[str, int], resends: Mapping[str, int]) -> dict:
    """Sums of each lifetime's last scrape against the records on each topic.

    ``tail_bounds[family]``: records that SIGKILLed lifetimes may have published after their
    last scrape (an upper bound the caller computed from record times); ``resends[family]``:
    records that delivery retries may have sent twice (from the workers' logs). The topic may
    exceed the counters by at most their sum, never fall short of them.
    """
    out, problems = {}, []
    for family, on_topic in topic_counts.items():
        counted = sum((lt.last_scrape or {}).get(family, 0.0) for lt in lifetimes)
        graceful = sum((lt.last_scrape or {}).get(family, 0.0) for lt in lifetimes
                       if lt.end_kind != "sigkill")
        diff = on_topic - int(counted)
        bound = tail_bounds.get(family, 0) + resends.get(family, 0)
        ok = 0 <= diff <= bound
        out[family] = {"counters": int(counted), "counters_graceful_or_running": int(graceful),
                       "on_topic": on_topic, "topic_minus_counters": diff,
                       "sigkill_tail_bound": tail_bounds.get(family, 0),
                       "delivery_resend_bound": resends.get(family, 0), "explained": ok}
        if not ok:
            problems.append(f"{family}: topic {on_topic} vs counters {int(counted)} "
                            f"(difference {diff}, bound {bound})")
    return {"families": out, "problems": problems}


def summarise_recoveries(faults: Sequence[Fault]) -> dict:
    """Count, median and max recovery seconds per fault kind."""
    by_kind: dict[str, list[float]] = {}
    for f in faults:
        if f.recovered_at is not None:
            by_kind.setdefault(f.kind, []).append(f.recovered_at - f.end)
    return {k: {"count": len(v), "median_s": round(statistics.median(v), 2),
                "max_s": round(max(v), 2)} for k, v in sorted(by_kind.items())}
