"""``intent-worker evaluate --outcomes``: the champion's figures, and champion against
shadow, on the outcome records the worker published (schemas/intent-outcome.v1.json).

Records come from the outcomes topic (read whole with :func:`read_topic_range`'s own
consumer: no group, no committed offset touched) or from a JSON Lines file. Each is
validated against the schema; a bad one is counted with its reason and never used.

The range ``[from_ms, to_ms)`` is on each record's ``event_ts`` (the event time of the scored
window's newest event), not on the Kafka record timestamp. An outcome is produced only when
its label is known: a purchase inside the horizon, or the partition's event time passing the
horizon plus the allowed lateness, so its Kafka timestamp trails the scored event by up to the
horizon and more, and by days on a replay of old events. Selecting by event time picks the
same scored events that ``evaluate --topic ... --from-time ... --to-time ...`` or a file of
that span yields, so the two reports are comparable; selecting by Kafka time would not.

Delivery is at-least-once, so a ``score_id`` can arrive twice: the first record wins (records
of one user share a partition, so "first" is the offset order), the others are counted, and
those that disagree with the first on label or score are counted apart (they point at a bug,
not a redelivery).

Figures: per champion model version, every metric of
:func:`worker.dataset.metrics.compute_metrics` (the function ``evaluate`` uses, on the same
(label, score) pairs); on the records that carry a shadow score, shadow minus champion on
those same records, with 95 % intervals from
:func:`worker.training.metrics.paired_bootstrap`, which resamples users.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from worker.dataset.metrics import compute_metrics
from worker.errors import ConfigError
from worker.events.parse import format_ts
from worker.events.schemas import iter_errors
from worker.kafka.reader import check_range, parse_time, read_topic_range

__all__ = [
    "MIN_POSITIVES",
    "SCHEMA",
    "Comparison",
    "OutcomeRead",
    "PairComparison",
    "compare_outcomes",
    "format_comparison",
    "outcomes_from_file",
    "outcomes_from_records",
    "outcomes_from_topic",
    "verdict",
    "write_outcome_report",
]

SCHEMA = "intent-outcome.v1"
MIN_POSITIVES = 10  # fewer positives among the paired records: no verdict
BOOTSTRAP_METRICS = ("pr_auc", "roc_auc", "brier")
_EXAMPLES = 5  # bad records quoted in the report, at most


# -- reading ------------------------------------------------------------------------------


@dataclass(slots=True)
class OutcomeRead:
    """The valid, deduplicated records of a range, in read order, and what was left out."""

    from_ms: int | None
    to_ms: int | None
    records: list[dict] = field(default_factory=list)
    read: int = 0  # messages or non-blank lines seen
    out_of_range: int = 0  # valid, but event_ts outside [from_ms, to_ms)
    duplicates: int = 0  # in range, a score_id seen before (left out)
    conflicting: int = 0  # of those, how many disagree with the first on label or score
    invalid: int = 0
    invalid_reasons: Counter[str] = field(default_factory=Counter)
    invalid_examples: list[str] = field(default_factory=list)  # "where: reason", the first few
    _first: dict[str, tuple[int, float]] = field(default_factory=dict, repr=False)

    def add(self, raw: bytes | str | None, where: str) -> None:
        """Take one raw message or line: validate, select by event time, deduplicate."""
        self.read += 1
        try:
            record, ts = _parse(raw)
        except ValueError as exc:
            reason = str(exc)
            self.invalid += 1
            self.invalid_reasons[reason] += 1
            if len(self.invalid_examples) < _EXAMPLES:
                self.invalid_examples.append(f"{where}: {reason}")
            return
        if (self.from_ms is not None and ts < self.from_ms) or (
                self.to_ms is not None and ts >= self.to_ms):
            self.out_of_range += 1
            return
        key = (record["label"], record["score"])
        first = self._first.get(record["score_id"])
        if first is not None:
            self.duplicates += 1
            self.conflicting += first != key
            return
        self._first[record["score_id"]] = key
        self.records.append(record)

    def summary(self) -> dict:
        return {
            "from": None if self.from_ms is None else format_ts(self.from_ms),
            "to": None if self.to_ms is None else format_ts(self.to_ms),
            "read": self.read, "used": len(self.records), "out_of_range": self.out_of_range,
            "duplicates": self.duplicates, "conflicting_duplicates": self.conflicting,
            "invalid": self.invalid, "invalid_reasons": dict(self.invalid_reasons.most_common()),
            "invalid_examples": list(self.invalid_examples),
        }


def _parse(raw: bytes | str | None) -> tuple[dict, int]:
    """One outcome record and its event time in epoch ms; ValueError saying what is wrong."""
    if raw is None:
        raise ValueError("empty message (no value)")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("not JSON") from None
    first = next(iter_errors(SCHEMA, doc), None)
    if first is not None:
        raise ValueError(f"not {SCHEMA}: {first}")
    try:
        ts = parse_time(doc["event_ts"])
    except ConfigError as exc:
        raise ValueError(f"$.event_ts: {exc}") from None
    return doc, ts


def outcomes_from_records(items: Iterable[tuple[bytes | str | None, str]], *,
                          from_ms: int | None, to_ms: int | None) -> OutcomeRead:
    """Outcome records from ``(raw, where)`` pairs, ``where`` naming each for the report."""
    check_range(from_ms, to_ms)
    out = OutcomeRead(from_ms, to_ms)
    for raw, where in items:
        out.add(raw, where)
    return out


def outcomes_from_file(path: Path, *, from_ms: int | None, to_ms: int | None) -> OutcomeRead:
    """Outcome records from a JSON Lines file (blank lines skipped); ConfigError when the file
    cannot be read."""
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return outcomes_from_records(
        ((line, f"line {i}") for i, line in enumerate(lines, 1) if line.strip()),
        from_ms=from_ms, to_ms=to_ms)


async def outcomes_from_topic(bootstrap: Sequence[str] | str, topic: str, *,
                              from_ms: int | None, to_ms: int | None,
                              **client_opts: Any) -> OutcomeRead:
    """Outcome records of a whole topic (as far as its retention keeps them) whose ``event_ts``
    is in ``[from_ms, to_ms)``. ``client_opts`` go to :func:`read_topic_range` (connection and
    security settings). ConfigError when the topic does not exist."""
    check_range(from_ms, to_ms)
    out = OutcomeRead(from_ms, to_ms)
    records = read_topic_range(bootstrap, topic, from_ms=None, to_ms=None, **client_opts)
    async with contextlib.aclosing(records):
        async for rec in records:
            out.add(rec.value, f"partition {rec.partition} offset {rec.offset}")
    return out


# -- comparing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PairComparison:
    """Shadow against champion on the records carrying both scores."""

    champion: str  # "name version"
    shadow: str
    n: int
    positives: int
    users: int
    champion_metrics: dict  # compute_metrics on the paired records
    shadow_metrics: dict
    diff: dict  # shadow minus champion, point figures: pr_auc, roc_auc, brier
    intervals: dict  # the diff's 95 % intervals by figure (None when undefined)
    bootstrap: dict  # paired_bootstrap's full answer
    verdict: str

    def to_json(self) -> dict:
        return {"champion": self.champion, "shadow": self.shadow, "records": self.n,
                "positives": self.positives, "users": self.users,
                "diff_shadow_minus_champion": self.diff, "diff_ci95": self.intervals,
                "bootstrap": self.bootstrap, "verdict": self.verdict}


@dataclass(frozen=True, slots=True)
class Comparison:
    """Every figure of one outcomes evaluation.

    ``results`` maps a report name to ``(labels, scores)``: ``champion <name> <version>``
    for all the records of each champion version, ``shadow <name> <version>`` for the
    records carrying that shadow's score, and ``champion <name> <version> (paired)`` for the
    champion on those same records when they are not all of its records."""

    champions: dict[str, dict]  # "name version" -> compute_metrics on all its records
    pairs: list[PairComparison]
    results: dict[str, tuple[np.ndarray, np.ndarray]]


def compare_outcomes(records: Sequence[dict], *, rounds: int = 500, seed: int = 0,
                     min_positives: int = MIN_POSITIVES) -> Comparison:
    """Champion figures per model version and, per (champion, shadow) pair, the paired
    comparison with its verdict. ConfigError when there are no records."""
    from worker.training.metrics import paired_bootstrap

    if not records:
        raise ConfigError("no outcome records to evaluate")
    by_champion: dict[str, list[dict]] = {}
    for r in records:
        by_champion.setdefault(_model(r["model"]), []).append(r)
    results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    champions: dict[str, dict] = {}
    pairs: list[PairComparison] = []
    for champ, recs in by_champion.items():
        y, s = _arrays(recs, lambda r: r["score"])
        results[f"champion {champ}"] = (y, s)
        champions[champ] = compute_metrics(y, s)
        by_shadow: dict[str, list[dict]] = {}
        for r in recs:
            if "shadow" in r:
                by_shadow.setdefault(_model(r["shadow"]), []).append(r)
        for shadow, paired in by_shadow.items():
            y, cs = _arrays(paired, lambda r: r["score"])
            _, ss = _arrays(paired, lambda r: r["shadow"]["score"])
            users = [r["user_id"] for r in paired]
            if len(paired) < len(recs):
                results[_unique(results, f"champion {champ} (paired)")] = (y, cs)
            results[_unique(results, f"shadow {shadow}", f" vs {champ}")] = (y, ss)
            cm, sm = compute_metrics(y, cs), compute_metrics(y, ss)
            boot = paired_bootstrap(y, {"shadow": ss, "champion": cs}, users, rounds=rounds,
                                    seed=seed, metrics=BOOTSTRAP_METRICS)
            diff = {m: None if sm[m] is None or cm[m] is None else sm[m] - cm[m]
                    for m in BOOTSTRAP_METRICS}
            intervals = {m: boot.get(f"{m}_diff_shadow_minus_champion_ci95")
                         for m in BOOTSTRAP_METRICS}
            positives = int(y.sum())
            pairs.append(PairComparison(
                champion=champ, shadow=shadow, n=len(paired), positives=positives,
                users=len(set(users)), champion_metrics=cm, shadow_metrics=sm, diff=diff,
                intervals=intervals, bootstrap=boot,
                verdict=verdict(intervals["pr_auc"], positives=positives, n=len(paired),
                                min_positives=min_positives)))
    return Comparison(champions=champions, pairs=pairs, results=results)


def verdict(pr_auc_diff_ci95: Sequence[float] | None, *, positives: int, n: int,
            min_positives: int = MIN_POSITIVES) -> str:
    """"shadow better" only when the interval of shadow minus champion PR-AUC lies above 0,
    "shadow worse" when below, else "no clear difference"; with fewer than ``min_positives``
    positives (or no negatives) it says so instead of judging."""
    if positives < min_positives or positives >= n or pr_auc_diff_ci95 is None:
        why = "no negatives" if 0 < n <= positives else f"{positives} positives"
        return (f"too few positives to compare ({why} in {n} paired records; "
                f"at least {min_positives} positives and some negatives needed)")
    lo, hi = pr_auc_diff_ci95
    if lo > 0:
        return "shadow better"
    if hi < 0:
        return "shadow worse"
    return "no clear difference"


def _model(m: dict) -> str:
    return f"{m['name']} {m['version']}"


def _arrays(records: Sequence[dict], score) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([r["label"] for r in records], dtype=int),
            np.array([score(r) for r in records], dtype=float))


def _unique(taken: dict, name: str, suffix: str = " (2)") -> str:
    return name if name not in taken else name + suffix


# -- output -------------------------------------------------------------------------------


def write_outcome_report(report_dir: Path, comparison: Comparison, read: OutcomeRead,
                         source: dict) -> Path:
    """metrics.json + plots + index.html through :func:`write_report`, as ``evaluate`` writes
    them; ``meta`` holds the source, the read counts and the paired comparisons."""
    from worker.evaluation.report import write_report

    meta = {
        "source": source,
        "selected_by": "event_ts (event time of the scored event), [from, to)",
        "outcomes": read.summary(),
        "champions": {c: f"champion {c}" for c in comparison.champions},
        "comparison": [p.to_json() for p in comparison.pairs],
    }
    summary = [f"{p.shadow} (shadow) against {p.champion} (champion) on {p.n} records of "
               f"{p.users} users, {p.positives} positives: {p.verdict}" for p in comparison.pairs]
    if read.invalid or read.duplicates:
        summary.append(f"{read.invalid} invalid records left out, {read.duplicates} duplicates "
                       f"of a score_id dropped ({read.conflicting} of them conflicting)")
    return write_report(report_dir, comparison.results, title="intent model outcomes",
                        meta=meta, summary=summary)


def format_comparison(comparison: Comparison, read: OutcomeRead) -> str:
    """The short table and verdict lines ``evaluate --outcomes`` prints."""
    lines = [f"{read.read} records read: {len(read.records)} used, {read.out_of_range} outside "
             f"the range, {read.duplicates} duplicates ({read.conflicting} conflicting), "
             f"{read.invalid} invalid"]
    for example in read.invalid_examples:
        lines.append(f"  invalid: {example}")
    lines.append(f"{'model':<44}{'n':>8}{'pos':>7}{'ROC-AUC':>9}{'PR-AUC':>9}{'Brier':>9}"
                 f"{'ECE':>8}")
    for name, (y, _) in comparison.results.items():
        m = _metrics_of(comparison, name)
        lines.append(f"{name[:43]:<44}{len(y):>8}{int(y.sum()):>7}{_f(m['roc_auc']):>9}"
                     f"{_f(m['pr_auc']):>9}{_f(m['brier']):>9}{_f(m['ece']):>8}")
    for p in comparison.pairs:
        lines.append(f"shadow {p.shadow} minus champion {p.champion} "
                     f"({p.n} paired records, {p.users} users, 95% intervals resampling users):")
        for m in BOOTSTRAP_METRICS:
            lines.append(f"  {m:<8}{_signed(p.diff[m]):>9}  {_ci(p.intervals[m])}"
                         + ("  (lower is better)" if m == "brier" else ""))
        lines.append(f"verdict: {p.verdict}")
    if not comparison.pairs:
        lines.append("no record carries a shadow score: no comparison "
                     "(run a shadow with INTENT_SHADOW_MODEL_PATH)")
    return "\n".join(lines)


def _metrics_of(comparison: Comparison, name: str) -> dict:
    champ = name.removeprefix("champion ")
    if champ in comparison.champions:
        return comparison.champions[champ]
    y, s = comparison.results[name]
    return compute_metrics(y, s)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.4f}"


def _ci(ci: Sequence[float] | None) -> str:
    return "[-]" if ci is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"
