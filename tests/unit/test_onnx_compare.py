"""loadtest.onnx_compare's measures: cosines to the reference rows, interleaved throughput."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest.onnx_compare import cosine_stats, throughput
from tests.support.fake_encoder import FakeEncoder


def test_cosine_stats_compare_row_by_row() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    same = cosine_stats(ref * 3, ref)  # scale does not matter
    assert same == {"mean": pytest.approx(1.0), "min": pytest.approx(1.0),
                    "p1": pytest.approx(1.0)}
    swapped = cosine_stats(ref[[1, 0, 2]], ref)  # rows are not matched to their nearest
    assert swapped["min"] == pytest.approx(0.0, abs=1e-6)
    assert swapped["mean"] == pytest.approx(1 / 3, abs=1e-6)


def test_throughput_runs_every_encoder_repeat_times_after_a_warm_up() -> None:
    encoders = {"a": FakeEncoder("a"), "b": FakeEncoder("b")}
    texts = [f"viewed product {i}" for i in range(40)]
    rates = throughput(encoders, texts, repeat=3)
    assert set(rates) == {"a", "b"} and all(r > 0 for r in rates.values())
    for enc in encoders.values():
        assert [len(c) for c in enc.calls] == [32, 40, 40, 40]
