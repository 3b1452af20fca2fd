"""The load-test harness' pure parts: Zipf sampler, latency and rate math, tables, profiles."""

from __future__ import annotations

import math
import random
from collections import Counter

import orjson
import pytest

from loadtest.gen import Product, ZipfSampler, make_events
from loadtest.profile import parse_collapsed
from loadtest.stats import (
    ExactHistogram,
    OutRecord,
    coverage,
    fmt,
    format_table,
    latencies,
    percentile,
    throughput,
)
from worker.events import parse_event


def test_zipf_probabilities_follow_the_power_law_and_sum_to_one():
    z = ZipfSampler(100, 1.2, rng=random.Random(0))
    total = sum(z.probability(k) for k in range(100))
    assert total == pytest.approx(1.0)
    assert z.probability(0) / z.probability(1) == pytest.approx(2**1.2)
    assert z.probability(9) / z.probability(99) == pytest.approx(10**1.2)


def test_zipf_draws_match_the_distribution_and_are_seeded():
    z = ZipfSampler(50, 1.0, rng=random.Random(1))
    draws = [z() for _ in range(40_000)]
    assert min(draws) >= 0 and max(draws) < 50
    counts = Counter(draws)
    for k in (0, 1, 4):
        assert counts[k] / len(draws) == pytest.approx(z.probability(k), rel=0.06)
    again = ZipfSampler(50, 1.0, rng=random.Random(1))
    assert [again() for _ in range(100)] == draws[:100]


def test_zipf_with_s_zero_is_uniform_and_bad_arguments_fail():
    z = ZipfSampler(4, 0.0, rng=random.Random(0))
    assert [z.probability(k) for k in range(4)] == pytest.approx([0.25] * 4)
    with pytest.raises(ValueError):
        ZipfSampler(0, 1.0, rng=random.Random(0))
    with pytest.raises(ValueError):
        ZipfSampler(3, -1.0, rng=random.Random(0))


def test_generated_events_are_valid_deterministic_and_skewed():
    catalog = [
        Product("1", "acme phone 0001", "electronics.smartphone", "acme", 99.0),
        Product("2", "generic sofa 0002", "furniture.living_room.sofa", None, None),
    ]
    events = make_events(400, users=50, zipf_s=1.1, catalog=catalog, seed=3)
    assert events == make_events(400, users=50, zipf_s=1.1, catalog=catalog, seed=3)
    assert len({e["event_id"] for e in events}) == 400
    for e in events:
        parse_event(__import__("orjson").dumps(e), max_bytes=65536)  # raises when invalid
    users = Counter(e["user_id"] for e in events)
    assert users.most_common(1)[0][0] == "u0"


def test_percentile_is_exact_nearest_rank():
    xs = list(range(1, 101))  # 1..100
    assert percentile(xs, 50) == 50
    assert percentile(xs, 99) == 99
    assert percentile(xs, 100) == 100
    assert percentile(xs, 0) == 1
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(xs, 101)


def test_exact_histogram_sorts_lazily():
    h = ExactHistogram()
    h.extend([5, 1, 3, 2, 4])
    s = h.summary((50, 100))
    assert s == {"count": 5, "p50": 3, "p100": 5, "max": 5, "mean": 3}
    assert ExactHistogram().summary()["p99"] is None


def test_latency_runs_from_the_newest_covered_event_and_per_event_from_each():
    publish = {"e1": 1000.0, "e2": 1040.0, "e3": 1100.0}
    records = [
        OutRecord(1150, ("e1", "e2")),
        OutRecord(1300, ("e3",)),
        OutRecord(1400, ("e1", "e2", "e3")),  # a later rescore: per-event keeps the first
        OutRecord(1500, ("unknown",)),
    ]
    per_record, per_event = latencies(records, publish)
    assert sorted(per_record.values) == [110, 200, 300]  # 1150-1040, 1300-1100, 1400-1100
    assert sorted(per_event.values) == [110, 150, 200]  # e2, e1, e3 by their first record


def test_coverage_counts_missing_repeated_and_unexpected():
    records = [OutRecord(1, ("a", "b")), OutRecord(2, ("b", "x"))]
    cov = coverage(records, ["a", "b", "c"])
    assert (cov.expected, cov.covered, cov.missing, cov.covered_more_than_once, cov.unexpected) == (
        3,
        2,
        1,
        1,
        1,
    )
    assert cov.missing_sample == ("c",) and not cov.complete
    assert coverage(records, ["a"]).complete


def test_throughput_skips_the_first_batch():
    # batch 1 ends at t=1000 with 3 events; batches 2 and 3 add 4 events by t=3000
    records = [
        OutRecord(990, ("a", "b"), "1"),
        OutRecord(1000, ("c",), "1"),
        OutRecord(2000, ("d", "e"), "2"),
        OutRecord(3000, ("f",), "3"),
        OutRecord(2990, ("g",), "3"),
    ]
    t = throughput(records)
    assert (t.events, t.records, t.batches, t.span_s) == (7, 5, 3, 2.0)
    assert t.events_per_s == pytest.approx(2.0)  # 4 events in 2 s
    assert t.records_per_s == pytest.approx(1.5)
    assert t.events_per_record == pytest.approx(7 / 5)
    only = throughput(records, {"a", "d", "f", "zzz"})  # others were published by another phase
    assert only.events == 3 and only.events_per_s == pytest.approx(1.0)
    single = throughput([OutRecord(5, ("a",), "1")])
    assert single.events_per_s is None and single.events == 1


def test_format_table_aligns_text_left_and_numbers_right():
    rows = [
        {"row": "a", "rate": 12345.678, "n": 3, "ok": True},
        {"row": "bb", "rate": None, "n": 10, "ok": False},
    ]
    text = format_table(rows, [("row", "row"), ("rate", "events/s"), ("n", "n"), ("ok", "ok")])
    lines = text.splitlines()
    assert lines[0] == "| row | events/s |  n | ok  |"
    assert lines[1] == "|-----|---------:|---:|-----|"
    assert lines[2] == "| a   | 12,345.7 |  3 | yes |"
    assert lines[3] == "| bb  |        - | 10 | no  |"
    assert fmt(float("nan")) == "-"


def test_collapsed_profile_counts_inclusive_once_per_stack():
    lines = [
        'process 1:"python";main (w/cli.py:3);loop (a/b.py:10);loop (a/b.py:12);f (x.py:1) 3',
        "main (w/cli.py:3);g (x.py:9) 1",
        "",
    ]
    inclusive, own, total = parse_collapsed(lines)
    assert total == 4
    assert inclusive["main (w/cli.py)"] == 4
    assert inclusive["loop (a/b.py)"] == 3  # recursion is counted once per sample
    assert own == Counter({"f (x.py)": 3, "g (x.py)": 1})


def test_bench_targets_from_rows():
    import argparse

    from loadtest.bench import render, summarise

    rows = {
        "a": {"events_per_s": 1000.0},
        "b": {"events_per_s": 600.0},
        "c": {"events_per_s": 90.0, "seq_per_s": 30.0, "covered": True, "p99_ms": 700.0},
        "d": {"events_per_s": 100.0, "seq_per_s": 40.0, "batch_ms": {"p99": 300.0}},
    }
    s = summarise(rows, argparse.Namespace(batch_wait_ms=50))
    assert s["b_over_a"] == pytest.approx(0.6)
    assert s["c_over_d_events"] == pytest.approx(0.9)
    assert s["c_events_per_model_seq"] == pytest.approx(3.0)
    assert s["latency_bound_ms"] == pytest.approx(650.0)  # 50 + 2 x 300
    met = {name: t["met"] for name, t in s["targets"].items()}
    # 700 ms > 650 ms; c/b = 90/600; no encoder count for c
    assert list(met.values()) == [True, True, True, True, False, False, None]
    missing = summarise({"a": rows["a"]}, argparse.Namespace(batch_wait_ms=50))
    assert missing["targets"]["b/a >= 0.5"]["met"] is None
    load = {"before": 1, "after": 2}
    meta = {"machine": "m", "started": "t", "command": "c", "loadavg_1_5_15": load}
    text = render({k: {"row": k, **v} for k, v in rows.items()}, s, meta)
    assert "NOT MET  p99 latency" in text and "MET      b/a >= 0.5: 0.600" in text


def test_profile_parts_take_the_first_matching_part_and_skip_start_up():
    from loadtest.profile import categorise

    lines = [
        "main (w/cli.py:3);process (worker/scoring/pipeline.py:9);decode_window (c.py:1) 5",
        "main (w/cli.py:3);process (worker/scoring/pipeline.py:9) 2",
        "main (w/cli.py:3);_find_and_load (<frozen importlib._bootstrap>:1) 7",
        "main (w/cli.py:3);select (selectors.py:1) 1",
    ]
    parts = (("decode", "decode_window"), ("pipeline", "pipeline.py"))
    counts, total = categorise(lines, parts)
    assert total == 8
    assert counts == Counter({"decode": 5, "pipeline": 2, "other": 1})


def test_cpu_per_event_leaves_start_up_out():
    from loadtest.bench import cpu_per_event_ms

    # (offsets committed, CPU s): 4 s of start-up before the first commit
    samples = [(0, 3.0), (0, 4.0), (100, 4.5), (300, 4.9), (500, 5.3)]
    assert cpu_per_event_ms(samples) == pytest.approx(800 / 400)  # 0.8 s for 400 events
    assert cpu_per_event_ms([(0, 1.0), (10, 2.0)]) is None
    assert cpu_per_event_ms([(10, 1.0), (10, 2.0)]) is None


def test_model_rows_warm_windows_lengthen_the_texts_but_only_the_batch_is_scored():
    from loadtest.model_bench import worker_batches

    class Recorder:
        max_chars = 10_000

        def __init__(self) -> None:
            self.calls: list[list] = []

        def score(self, inputs: list) -> list[float]:
            self.calls.append(list(inputs))
            return [0.0] * len(inputs)

    catalog = [Product("1", "acme phone 0001", "electronics.smartphone", "acme", 99.0)]
    stream = make_events(60, users=2, zipf_s=0.0, catalog=catalog, seed=4)
    warm, events = stream[:40], stream[40:]
    cold_model, warm_model = Recorder(), Recorder()
    cold = worker_batches(events, batch_max=10, model=cold_model)
    hot = worker_batches(events, batch_max=10, model=warm_model, warm=warm)
    assert cold["events"] == hot["events"] == 20  # warm-up events are never counted
    assert cold["batches"] == hot["batches"] == 2
    last_cold, last_warm = cold_model.calls[-1], warm_model.calls[-1]
    assert len(last_cold) == len(last_warm)
    # same users, same batch: the warm windows hold the 40 earlier events too
    assert sum(len(i.text) for i in last_warm) > sum(len(i.text) for i in last_cold) + 500


METRICS_PAGE = """\
# HELP intent_events_scored_total Valid events covered by a score record
# TYPE intent_events_scored_total counter
intent_events_scored_total 400.0
intent_events_scored_created 1.7e+09
intent_event_vectors_total{source="process"} 300.0
intent_event_vectors_total{source="redis"} 60.0
intent_event_vectors_total{source="encoder"} 40.0
intent_text_cache_total{result="hit"} 0.0
intent_model_info{name="old \\"one\\"",version="1.0.0"} 0.0
intent_model_info{name="intent-minilm",version="2.0.0"} 1.0
intent_consumer_lag{partition="0",topic="t"} 3.0
"""


def test_metrics_page_parses_to_samples_by_name_and_labels():
    from loadtest.stats import metric_sum, parse_metrics

    samples = parse_metrics(METRICS_PAGE)
    assert samples[("intent_events_scored_total", ())] == 400.0
    assert samples[("intent_consumer_lag", (("partition", "0"), ("topic", "t")))] == 3.0
    assert samples[("intent_model_info", (("name", 'old "one"'), ("version", "1.0.0")))] == 0.0
    assert metric_sum(samples, "intent_event_vectors_total") == 400.0  # all sources
    assert metric_sum(samples, "intent_event_vectors_total", source="redis") == 60.0
    assert metric_sum(samples, "intent_event_vectors_total", source="nowhere") is None
    with pytest.raises(ValueError):
        parse_metrics("intent_events_scored_total\n")  # a sample without a value


def test_model_stats_of_a_pooled_and_of_a_text_model():
    from loadtest.stats import model_stats, parse_metrics

    pooled = model_stats(parse_metrics(METRICS_PAGE))
    assert pooled["events"] == 400
    assert pooled["encoder_seq_per_event"] == pytest.approx(40 / 400)
    assert pooled["process_hit_rate"] == pytest.approx(300 / 400)
    assert pooled["redis_hit_rate"] == pytest.approx(60 / 400)
    assert pooled["model"] == {"name": "intent-minilm", "version": "2.0.0"}  # the one at 1
    text = model_stats(parse_metrics(
        'intent_events_scored_total 100.0\n'
        'intent_text_cache_total{result="hit"} 10.0\n'
        'intent_text_cache_total{result="miss"} 80.0\n'))
    assert text["encoder_seq_per_event"] == pytest.approx(0.8)  # window texts encoded
    assert text["encoder_sequences"] == 80 and pooled["encoder_sequences"] == 40
    assert text["process_hit_rate"] is None and text["redis_hit_rate"] is None
    assert text["model"] is None
    assert model_stats({})["encoder_seq_per_event"] is None  # nothing scored


def test_bench_targets_of_the_model_at_the_speed_of_the_stream():
    import argparse

    from loadtest.bench import render, summarise

    args = argparse.Namespace(batch_wait_ms=50)
    rows = {
        "b": {"events_per_s": 8000.0},
        "c": {"events_per_s": 2400.0, "encoder_seq_per_event": 0.2, "covered": True,
              "process_hit_rate": 0.9, "redis_hit_rate": 0.05},
    }
    s = summarise(rows, args)
    assert s["c_over_b"] == pytest.approx(0.3)
    assert s["c_process_hit_rate"] == pytest.approx(0.9)
    t = s["targets"]
    assert t["c/b >= 0.25 (events/s, same run)"]["met"] is True
    assert t["encoder sequences per event (c) <= 0.3"]["met"] is True
    assert t["b/a >= 0.5"]["met"] is None and t["b/a >= 0.5"]["target"] == ">= 0.5"
    slow = summarise({**rows, "c": {**rows["c"], "events_per_s": 1900.0,
                                    "encoder_seq_per_event": 0.31}}, args)
    assert slow["targets"]["c/b >= 0.25 (events/s, same run)"]["met"] is False  # 0.2375
    assert slow["targets"]["encoder sequences per event (c) <= 0.3"]["met"] is False
    load = {"before": 1, "after": 2}
    meta = {"machine": "m", "started": "t", "command": "c", "loadavg_1_5_15": load,
            "model": {"path": "/m", "kind": "pooled", "serving_c": "x 2"}}
    text = render({k: {"row": k, **v} for k, v in rows.items()}, s, meta)
    assert "MET      c/b >= 0.25 (events/s, same run): 0.300" in text
    assert "c_redis_hit_rate         0.050" in text
    assert "model: pooled at /m; serving in c: x 2" in text


class _Phrases:
    """A phrase encoder that counts what it encodes."""

    encoder_id = "fake-enc"
    dim = 4

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, phrases):
        import numpy as np

        self.encoded.extend(phrases)
        return np.ones((len(phrases), self.dim), dtype=np.float32)


class _VectorModel:
    """Scores through event vectors, as the pooled model does (phrases only)."""

    max_chars = 0
    phrase_price = "bucket"

    def __init__(self) -> None:
        from worker.model.vectors import EventVectors
        from worker.vectors import MemoryVectorStore

        self.store = MemoryVectorStore()
        self.vectors = EventVectors(_Phrases(), store=self.store)
        self.warmed = 0

    def warm_up(self) -> float:
        self.warmed += 1
        return 0.0

    def clear_cache(self) -> None:
        self.vectors.clear_cache()

    def score(self, inputs):
        raise AssertionError("a vector model is scored with score_async")

    async def score_async(self, inputs):
        await self.vectors.vectors([p for i in inputs for p in i.events.phrases])
        return [0.5] * len(inputs)


def test_model_rows_warm_vectors_come_from_the_store_and_only_the_batches_are_counted():
    from loadtest.model_bench import worker_batches

    catalog = [Product(str(i), f"acme phone {i:04d}", "electronics.smartphone", "acme", 99.0)
               for i in range(30)]
    stream = make_events(300, users=5, zipf_s=0.0, catalog=catalog, seed=4)
    warm, events = stream[:200], stream[200:]
    hot_model, cold_model = _VectorModel(), _VectorModel()
    hot = worker_batches(events, batch_max=25, model=hot_model, warm=warm)
    cold = worker_batches(events, batch_max=25, model=cold_model, warm=warm, warm_vectors=False)
    assert hot["events"] == cold["events"] == 100 and hot["batches"] == 4
    assert hot_model.warmed == cold_model.warmed == 1
    # the warm windows' phrases were encoded before the clock, then found in the store (the
    # process cache was emptied, as for a worker that starts after others ran)
    assert hot["warm_vectors"]["phrases_encoded"] > 0
    assert hot["vectors"]["store_hits"] > 0
    assert cold["vectors"]["store_hits"] == 0 and cold["warm_vectors"] is None
    assert hot["vectors"]["encoded"] < cold["vectors"]["encoded"]
    v = hot["vectors"]
    phrases = v["process_hits"] + v["store_hits"] + v["encoded"]
    assert v["store_hit_rate"] == pytest.approx(v["store_hits"] / phrases)
    assert hot["encoder_seq_per_event"] == pytest.approx(v["encoded"] / 100)
    # every phrase is encoded once over the warm-up and the batches together
    encoded = hot_model.vectors.encoder.encoded
    assert len(encoded) == len(set(encoded))


def test_model_rows_warm_vectors_cover_every_warm_event_even_past_the_window_length():
    from loadtest.model_bench import worker_batches
    from worker.events import parse_event
    from worker.features.phrase import event_phrase

    catalog = [Product(str(i), f"acme phone {i:04d}", "electronics.smartphone", "acme", 99.0)
               for i in range(60)]
    stream = make_events(140, users=1, zipf_s=0.0, catalog=catalog, seed=7)
    warm, events = stream[:120], stream[120:]
    model = _VectorModel()
    out = worker_batches(events, batch_max=10, model=model, warm=warm, window_max_events=10)
    # one user, 120 warm events, windows of 10: scored batch by batch, none is missed
    phrases = {event_phrase(parse_event(__import__("orjson").dumps(e), max_bytes=65536),
                            price="bucket") for e in warm}
    assert out["warm_vectors"]["phrases_encoded"] == len(phrases) > 10


def test_synthetic_rows_of_a_pooled_model_time_its_phrase_encoder():
    from types import SimpleNamespace

    import torch

    from loadtest.model_bench import _shipped_forward

    encoder = torch.nn.Linear(3, 2)  # 8 parameters
    pooled = SimpleNamespace(name="m", version="2", vectors=SimpleNamespace(
        encoder=SimpleNamespace(encoder=encoder)))
    forward, params, note = _shipped_forward(pooled, torch.device("cpu"))
    assert forward is encoder and params == 8 and "pooled" in note


def test_replay_stream_repeats_a_recording_with_new_ids_and_shifted_times() -> None:
    from loadtest.gen import replay_stream
    from worker.events import parse_event

    t0 = 1_700_000_000_000
    recorded = [{"event_id": "b", "user_id": "u1", "event_type": "view", "ts": t0 + 2_000},
                {"event_id": "a", "user_id": "u2", "event_type": "view", "ts": t0 + 1_000}]
    out = replay_stream(recorded, 5)
    assert [e["event_id"] for e in out] == ["rp-0-a", "rp-0-b", "rp-1-a", "rp-1-b", "rp-2-a"]
    parsed = [parse_event(orjson.dumps(e), max_bytes=10_000) for e in out]
    assert [p["ts"] - t0 for p in parsed] == [1_000, 2_000, 3_000, 4_000, 5_000]  # span 1+1 s
    assert [p["user_id"] for p in parsed][:2] == ["u2", "u1"]


def test_bench_worker_env_takes_settings_and_refuses_anything_else():
    from loadtest.bench import parse_args

    args = parse_args(["--worker-env", "INTENT_OUTCOMES_ENABLED=off",
                       "--worker-env", "INTENT_SHADOW_MODEL_PATH=/m"])
    assert args.worker_env == {"INTENT_OUTCOMES_ENABLED": "off", "INTENT_SHADOW_MODEL_PATH": "/m"}
    for bad in ("OUTCOMES=off", "INTENT_X"):
        with pytest.raises(SystemExit):
            parse_args(["--worker-env", bad])
