"""BatchObserver: what one finished micro-batch adds to the metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from worker.ops.metrics import BatchObserver, Metrics


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int


@dataclass
class Result:
    scores: list = field(default_factory=lambda: [b"s1", b"s2"])
    latencies_ms: list = field(default_factory=lambda: [200, 400])
    dead_letter_reasons: list = field(default_factory=lambda: ["invalid_json"])
    alert_kinds: list = field(default_factory=list)
    events: int = 3
    sequences: int = 2
    store_s: float = 0.01
    model_s: float = 0.1
    detect_s: float = 0.001
    outcome_labels: list = field(default_factory=lambda: [0, 1, 0])
    outcome_s: float = 0.002
    shadow_s: float = 0.0


class Scorer:
    def __init__(self, version: str, hits: int = 0, misses: int = 0) -> None:
        self.name, self.version, self.cache_hits, self.cache_misses = "m", version, hits, misses


def sample(metrics: Metrics, metric: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(metric, labels or None)
    return 0.0 if value is None else value


def observer_for(scorer: list[Scorer], windows: list[tuple[int, int]],
                 highwater: dict[tuple[str, int], int | None]) -> BatchObserver:
    def high(topic: str, partition: int) -> int | None:
        if (topic, partition) not in highwater:
            raise KeyError("not assigned")
        return highwater[(topic, partition)]

    return BatchObserver(Metrics(), highwater=high, scorer=lambda: scorer[0],
                         window_cache=lambda: windows[0])


def test_a_batch_is_counted_once_with_its_lag_per_partition() -> None:
    observer = observer_for([Scorer("1")], [(0, 0)],
                            {("t", 0): 10, ("t", 1): None})  # partition 2: raises
    messages = [Msg("t", 0, 3), Msg("t", 0, 7), Msg("t", 1, 5), Msg("t", 2, 1)]
    observer.observe(messages, Result(), batch_s=0.5)
    m = observer.metrics
    assert sample(m, "intent_events_in_total") == 4 and sample(m, "intent_scores_total") == 2
    assert sample(m, "intent_dead_letters_total", reason="invalid_json") == 1
    assert sample(m, "intent_consumer_lag", topic="t", partition="0") == 2  # 10 - 7 - 1
    assert m.registry.get_sample_value("intent_consumer_lag", {"topic": "t", "partition": "1"}) \
        is None  # watermark unknown, or the consumer failed: left out
    observer.forget([("t", 0)])
    assert "intent_consumer_lag{" not in m.render().decode()


def test_cache_counters_add_what_was_gained_since_the_last_batch() -> None:
    scorer, windows = [Scorer("1", hits=5, misses=2)], [(10, 4)]
    observer = observer_for(scorer, windows, {})
    observer.observe([], Result(), 0.1)
    scorer[0].cache_hits, windows[0] = 8, (15, 4)
    observer.observe([], Result(), 0.1)
    m = observer.metrics
    assert sample(m, "intent_text_cache_total", result="hit") == 8
    assert sample(m, "intent_text_cache_total", result="miss") == 2
    assert sample(m, "intent_window_cache_total", result="hit") == 15
    assert sample(m, "intent_window_cache_total", result="miss") == 4


def test_a_new_model_is_reported_and_its_cache_counts_start_from_zero() -> None:
    scorer = [Scorer("1", hits=5)]
    observer = observer_for(scorer, [(0, 0)], {})
    observer.observe([], Result(), 0.1)
    scorer[0] = Scorer("2", hits=1)  # swapped in: its own cache, counted from zero
    observer.observe([], Result(), 0.1)
    m = observer.metrics
    assert sample(m, "intent_text_cache_total", result="hit") == 6
    assert sample(m, "intent_model_info", name="m", version="2") == 1
    assert m.registry.get_sample_value("intent_model_info", {"name": "m", "version": "1"}) is None


@dataclass
class Vectors:
    process_hits: int = 0
    store_hits: int = 0
    encoded: int = 0


def test_event_vector_sources_are_counted_per_batch_and_restart_with_a_new_model() -> None:
    scorer = Scorer("1")
    scorer.vectors = Vectors(process_hits=4, store_hits=2, encoded=3)
    holder = [scorer]
    observer = observer_for(holder, [(0, 0)], {})
    observer.observe([], Result(), 0.1)
    scorer.vectors.process_hits, scorer.vectors.encoded = 10, 4
    observer.observe([], Result(), 0.1)
    m = observer.metrics
    assert sample(m, "intent_event_vectors_total", source="process") == 10
    assert sample(m, "intent_event_vectors_total", source="redis") == 2
    assert sample(m, "intent_event_vectors_total", source="encoder") == 4
    fresh = Scorer("2")
    fresh.vectors = Vectors(process_hits=1)
    holder[0] = fresh
    observer.observe([], Result(), 0.1)
    assert sample(m, "intent_event_vectors_total", source="process") == 11


def test_latest_scores_kept_for_lookups_are_counted_by_result() -> None:
    counts = [(0, 0, 0)]
    observer = BatchObserver(Metrics(), highwater=lambda t, p: None,
                             scorer=lambda: Scorer("1"), latest=lambda: counts[0])
    counts[0] = (5, 1, 0)
    observer.observe([Msg("t", 0, 1)], Result(), batch_s=0.1)
    counts[0] = (7, 1, 3)
    observer.observe([Msg("t", 0, 2)], Result(), batch_s=0.1)
    m = observer.metrics
    assert sample(m, "intent_latest_scores_total", result="written") == 7
    assert sample(m, "intent_latest_scores_total", result="kept") == 1
    assert sample(m, "intent_latest_scores_total", result="failed") == 3


def test_outcomes_are_counted_by_label_and_their_time_observed() -> None:
    observer = BatchObserver(Metrics(), highwater=lambda t, p: None, scorer=lambda: Scorer("1"))
    m = observer.metrics
    assert 'intent_outcomes_total{label="1"} 0.0' in m.render().decode()  # there from the start
    observer.observe([], Result(outcome_labels=[0, 1, 0], outcome_s=0.002), 0.1)
    observer.observe([], Result(outcome_labels=[1], outcome_s=0.004), 0.1)
    assert sample(m, "intent_outcomes_total", label="0") == 2
    assert sample(m, "intent_outcomes_total", label="1") == 2
    assert sample(m, "intent_outcome_seconds_count") == 2
    assert sample(m, "intent_outcome_seconds_sum") == 0.006


@dataclass(frozen=True)
class Figures:
    model: str = "m"
    version: str = "1"
    role: str = "champion"
    outcomes: int = 100
    positives: int = 7
    pr_auc: float = 0.4
    roc_auc: float = 0.8
    brier: float = 0.05
    ece: float = 0.02
    psi: float = 0.03


LIVE = {"intent_live_pr_auc": "pr_auc", "intent_live_roc_auc": "roc_auc",
        "intent_live_brier": "brier", "intent_live_ece": "ece", "intent_live_outcomes": "outcomes",
        "intent_live_positives": "positives", "intent_score_psi": "psi"}


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_live_gauges_carry_model_version_and_role_after_observe() -> None:
    figures = [Figures(), Figures(model="c", version="2", role="shadow", pr_auc=0.5, psi=0.3)]
    observer = BatchObserver(Metrics(), highwater=lambda t, p: None, scorer=lambda: Scorer("1"),
                             live=lambda: figures)
    observer.observe([], Result(), 0.1)
    m = observer.metrics
    for f in figures:
        for metric, attr in LIVE.items():
            labels = {"model": f.model, "version": f.version, "role": f.role}
            assert sample(m, metric, **labels) == getattr(f, attr), (metric, f.role)


def test_nan_figures_and_figures_no_longer_reported_are_not_exported() -> None:
    m = Metrics()
    m.set_live([Figures(), Figures(version="2")])
    m.set_live([Figures(pr_auc=math.nan, roc_auc=math.nan, psi=math.nan)])
    champion = {"model": "m", "version": "1", "role": "champion"}
    assert m.registry.get_sample_value("intent_live_pr_auc", champion) is None
    assert m.registry.get_sample_value("intent_score_psi", champion) is None
    assert sample(m, "intent_live_brier", **champion) == 0.05  # still defined: still there
    assert 'version="2"' not in m.render().decode()
    assert "NaN" not in m.render().decode()
    m.set_live([Figures(pr_auc=0.6)])  # defined again: back
    assert sample(m, "intent_live_pr_auc", **champion) == 0.6


def test_live_figures_are_refreshed_at_most_every_few_seconds() -> None:
    clock, calls = Clock(), []
    pr_auc = [0.1]

    def live() -> list[Figures]:
        calls.append(clock.now)
        return [Figures(pr_auc=pr_auc[0])]

    observer = BatchObserver(Metrics(), highwater=lambda t, p: None, scorer=lambda: Scorer("1"),
                             live=live, live_every_s=5.0, clock=clock)
    champion = {"model": "m", "version": "1", "role": "champion"}
    observer.observe([], Result(), 0.1)  # the first batch refreshes
    pr_auc[0] = 0.2
    clock.now += 4.9
    observer.observe([], Result(), 0.1)
    assert calls == [50.0] and sample(observer.metrics, "intent_live_pr_auc", **champion) == 0.1
    clock.now += 0.1
    observer.observe([], Result(), 0.1)
    assert calls == [50.0, 55.0]
    assert sample(observer.metrics, "intent_live_pr_auc", **champion) == 0.2
    observer.refresh_live(force=True)  # e.g. right after a hot swap
    assert calls == [50.0, 55.0, 55.0]


def test_a_failing_live_source_never_fails_the_batch() -> None:
    def live() -> list[Figures]:
        raise RuntimeError("boom")

    observer = BatchObserver(Metrics(), highwater=lambda t, p: None, scorer=lambda: Scorer("1"),
                             live=live)
    observer.observe([], Result(outcome_labels=[1]), 0.1)
    assert sample(observer.metrics, "intent_outcomes_total", label="1") == 1


def test_live_quality_figures_fit_the_gauges() -> None:
    from worker.outcomes.live import LiveQuality

    live = LiveQuality(window=10)
    live.add_outcomes("m", "1", "shadow", [0.1, 0.9, 0.2], [0, 1, 0])
    m = Metrics()
    m.set_live(live.figures())
    labels = {"model": "m", "version": "1", "role": "shadow"}
    assert sample(m, "intent_live_pr_auc", **labels) == 1.0
    assert sample(m, "intent_live_outcomes", **labels) == 3
    assert m.registry.get_sample_value("intent_score_psi", labels) is None  # no reference


def test_shadow_time_and_outcome_losses_are_counted():
    metrics = Metrics()
    trouble = [(0, 0)]
    observer = BatchObserver(metrics, highwater=lambda t, p: None, scorer=lambda: Scorer("1"),
                             outcome_trouble=lambda: trouble[0])
    observer.observe([], Result(), 0.5)
    trouble[0] = (3, 1)
    observer.observe([], Result(shadow_s=0.25), 0.5)
    observer.observe([], Result(shadow_s=0.5), 0.5)
    text = metrics.render().decode()
    assert 'intent_outcome_trouble_total{reason="dropped"} 3.0' in text
    assert 'intent_outcome_trouble_total{reason="shadow_failed"} 1.0' in text
    assert "intent_shadow_seconds_count 2.0" in text and "intent_shadow_seconds_sum 0.75" in text



def test_every_dead_letter_reason_and_given_alert_kind_is_exported_at_zero_from_the_start() -> None:
    # a labelled counter first seen at 1 hides that first increment from rate() and increase()
    from worker.events.deadletter import REASONS

    text = Metrics(alert_kinds=("bot_cadence", "price_outlier")).render().decode()
    for reason in REASONS:
        assert f'intent_dead_letters_total{{reason="{reason}"}} 0.0' in text
    assert 'intent_alerts_total{kind="bot_cadence"} 0.0' in text
    assert 'intent_alerts_total{kind="price_outlier"} 0.0' in text
    assert 'intent_alerts_total{kind=' not in Metrics().render().decode()


def test_batch_in_flight_and_delivery_retries_are_exported_from_the_start() -> None:
    metrics = Metrics()
    text = metrics.render().decode()
    assert "\nintent_batch_in_flight_seconds 0.0\n" in text
    assert "\nintent_delivery_retries_total 0.0\n" in text
    metrics.batch_in_flight.set(312.5)
    metrics.delivery_retries.inc()
    metrics.delivery_retries.inc()
    assert sample(metrics, "intent_batch_in_flight_seconds") == 312.5
    assert sample(metrics, "intent_delivery_retries_total") == 2
