"""Pure measurement math of the load tests: exact percentiles, latency, coverage, tables,
and the worker's /metrics page read back (:func:`parse_metrics`, :func:`model_stats`).

Latency definitions (see docs/benchmarks.md):

- **event-to-score latency** of a score record = the record's Kafka timestamp (set by the
  worker's producer when it sends the record) minus the publish time of the *newest* event
  it covers (the wall-clock time at which the load generator handed that event to its
  producer). Same start and end as the record's own ``latency_ms``, but the start is the
  generator's clock, so it also counts the input's trip through the producer and broker.
- **per-event latency** (reported alongside) = for each event, the Kafka timestamp of the
  first record covering it minus that event's own publish time: an event that opened a
  micro-batch waits for the batch to fill, so this tail is the one a user feels.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the smallest value with at least q % of values <= it).

    Exact on the data (no interpolation, no bucketing); NaN for no data.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    n = len(sorted_values)
    if n == 0:
        return math.nan
    rank = max(1, math.ceil(q / 100 * n))
    return float(sorted_values[rank - 1])


@dataclass
class ExactHistogram:
    """Keeps every value (fine for 10^6 values); percentiles are exact nearest-rank."""

    values: list[float] = field(default_factory=list)
    _sorted: bool = True

    def add(self, value: float) -> None:
        if self.values and value < self.values[-1]:
            self._sorted = False
        self.values.append(value)

    def extend(self, values: Iterable[float]) -> None:
        for v in values:
            self.add(v)

    def _ordered(self) -> list[float]:
        if not self._sorted:
            self.values.sort()
            self._sorted = True
        return self.values

    def __len__(self) -> int:
        return len(self.values)

    def summary(self, qs: Sequence[float] = (50, 95, 99)) -> dict[str, float | int | None]:
        xs = self._ordered()
        out: dict[str, float | int | None] = {"count": len(xs)}
        out.update({f"p{q:g}": (percentile(xs, q) if xs else None) for q in qs})
        out["max"] = xs[-1] if xs else None
        out["mean"] = (sum(xs) / len(xs)) if xs else None
        return out


@dataclass(frozen=True, slots=True)
class OutRecord:
    """An output record as the harness needs it: its Kafka timestamp, the events it covers
    and the micro-batch that produced it (records of one batch share ``batch``)."""

    ts_ms: int
    event_ids: tuple[str, ...]
    batch: str = ""


@dataclass(frozen=True, slots=True)
class Coverage:
    expected: int
    covered: int
    missing: int
    covered_more_than_once: int
    unexpected: int
    missing_sample: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return self.missing == 0


def coverage(
    records: Iterable[OutRecord], expected_ids: Iterable[str], *, sample: int = 5
) -> Coverage:
    """Is every expected event covered by at least one record (and how many twice)?"""
    expected = set(expected_ids)
    counts: Counter[str] = Counter()
    for r in records:
        counts.update(r.event_ids)
    covered = expected & counts.keys()
    missing = sorted(expected - covered)
    return Coverage(
        expected=len(expected),
        covered=len(covered),
        missing=len(missing),
        covered_more_than_once=sum(1 for e in covered if counts[e] > 1),
        unexpected=len(counts.keys() - expected),
        missing_sample=tuple(missing[:sample]),
    )


def latencies(
    records: Iterable[OutRecord], publish_ms: Mapping[str, float]
) -> tuple[ExactHistogram, ExactHistogram]:
    """(newest-covered latency per record, per-event latency), in ms; see the module doc.

    Records that cover no event with a known publish time are skipped; an event covered
    twice counts once, by its earliest record.
    """
    per_record = ExactHistogram()
    first_cover: dict[str, int] = {}
    for r in records:
        known = [publish_ms[e] for e in r.event_ids if e in publish_ms]
        if not known:
            continue
        per_record.add(r.ts_ms - max(known))
        for e in r.event_ids:
            if e in publish_ms and (e not in first_cover or r.ts_ms < first_cover[e]):
                first_cover[e] = r.ts_ms
    per_event = ExactHistogram()
    per_event.extend(ts - publish_ms[e] for e, ts in first_cover.items())
    return per_record, per_event


@dataclass(frozen=True, slots=True)
class Throughput:
    events: int  # distinct events covered
    records: int
    batches: int
    span_s: float  # end of the first batch -> end of the last one
    events_per_s: float | None
    records_per_s: float | None
    events_per_record: float | None


def throughput(records: Sequence[OutRecord], ids: set[str] | None = None) -> Throughput:
    """Steady-state rates of a drained backlog, measured between batch ends.

    A batch ends at the latest Kafka timestamp of its records. The first batch only marks
    the start (its events were consumed before the clock starts), so the rates are the
    events and records of batches 2..n over the time from the end of batch 1 to the end of
    batch n. Unbiased however few batches there are; None with a single batch. With ``ids``,
    only those events count (records may also cover events published by another phase).
    """

    def mine(event_ids: Iterable[str]) -> set[str]:
        return set(event_ids) if ids is None else ids.intersection(event_ids)

    ends: dict[str, int] = {}
    for r in records:
        ends[r.batch] = max(ends.get(r.batch, r.ts_ms), r.ts_ms)
    seen: set[str] = set()
    for r in records:
        seen.update(mine(r.event_ids))
    covered_with_repeats = sum(len(r.event_ids) for r in records)
    out = Throughput(
        events=len(seen),
        records=len(records),
        batches=len(ends),
        span_s=0.0,
        events_per_s=None,
        records_per_s=None,
        events_per_record=covered_with_repeats / len(records) if records else None,
    )
    if len(ends) < 2:
        return out
    first_batch = min(ends, key=lambda b: (ends[b], b))
    start, end = ends[first_batch], max(ends.values())
    later = [r for r in records if r.batch != first_batch]
    later_events = len(mine(e for r in later for e in r.event_ids))
    return Throughput(
        events=out.events,
        records=out.records,
        batches=out.batches,
        span_s=(end - start) / 1000.0,
        events_per_s=rate(later_events, start, end),
        records_per_s=rate(len(later), start, end),
        events_per_record=out.events_per_record,
    )


def rate(count: int, first_ms: float, last_ms: float) -> float | None:
    """``count`` per second over [first, last] (None when the span is empty)."""
    span_s = (last_ms - first_ms) / 1000.0
    return count / span_s if span_s > 0 else None


def ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return num / den


def fmt(value: object, digits: int = 1) -> str:
    """A table cell: None as '-', floats rounded, large numbers with thousands separators."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def format_table(rows: Sequence[Mapping[str, object]], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table: ``columns`` are (key, header); text left, numbers right."""
    header = [h for _, h in columns]
    cells = [[fmt(row.get(k)) for k, _ in columns] for row in rows]

    def is_number(v: object) -> bool:
        return v is None or (isinstance(v, int | float) and not isinstance(v, bool))

    numeric = [all(is_number(row.get(k)) for row in rows) for k, _ in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                v.rjust(w) if num else v.ljust(w)
                for v, w, num in zip(values, widths, numeric, strict=True)
            )
            + " |"
        )

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if num else ("-" * (w + 2))
            for w, num in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    return "\n".join([line(header), rule, *(line(c) for c in cells)])


# ---------------------------------------------------------------- the worker's /metrics page

Labels = tuple[tuple[str, str], ...]
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")


def _unescape(m: re.Match[str]) -> str:
    return "\n" if m.group(1) == "n" else m.group(1)


def parse_metrics(text: str) -> dict[tuple[str, Labels], float]:
    """Samples of a Prometheus text page: (name, sorted (label, value) pairs) -> value.

    Comments and blank lines are skipped; a line that is not a sample raises ValueError (the
    page is the worker's own, so a surprise there is a bug worth seeing)."""
    out: dict[tuple[str, Labels], float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ValueError(f"not a metrics sample: {line!r}")
        name, labels, value = m.groups()
        pairs = tuple(sorted((k, _ESCAPE.sub(_unescape, v))
                             for k, v in _LABEL.findall(labels or "")))
        out[(name, pairs)] = float(value)
    return out


def metric_sum(samples: Mapping[tuple[str, Labels], float], name: str,
               **labels: str) -> float | None:
    """The sum of ``name``'s series whose labels include ``labels``; None when none has."""
    found = [v for (n, pairs), v in samples.items()
             if n == name and all(dict(pairs).get(k) == want for k, want in labels.items())]
    return sum(found) if found else None


def model_stats(samples: Mapping[tuple[str, Labels], float]) -> dict:
    """What a worker's model did, from its /metrics samples since it started.

    ``encoder_seq_per_event``: sequences the encoder read per event scored, either kind of
    model (event phrases for a pooled model, window texts missing the text cache for a text
    model). ``process_hit_rate`` and ``redis_hit_rate``: shares of the distinct phrases of
    each batch (summed over batches) whose vector came from this process or from Redis
    (None without event vectors). ``model``: name and version serving at the scrape."""
    events = metric_sum(samples, "intent_events_scored_total")
    sources = {s: metric_sum(samples, "intent_event_vectors_total", source=s) or 0.0
               for s in ("process", "redis", "encoder")}
    text = {r: metric_sum(samples, "intent_text_cache_total", result=r) or 0.0
            for r in ("hit", "miss")}
    phrases = sum(sources.values())
    model = next((dict(pairs) for (n, pairs), v in samples.items()
                  if n == "intent_model_info" and v == 1), None)
    return {
        "events": int(events) if events is not None else None,
        "vector_phrases": {k: int(v) for k, v in sources.items()},
        "text_cache": {k: int(v) for k, v in text.items()},
        "encoder_sequences": int(sources["encoder"] + text["miss"]),
        "encoder_seq_per_event": ratio(sources["encoder"] + text["miss"], events),
        "process_hit_rate": ratio(sources["process"], phrases),
        "redis_hit_rate": ratio(sources["redis"], phrases),
        "model": model,
    }
