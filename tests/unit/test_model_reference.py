"""ScoreReference: quantile bins that survive ties, PSI, and the config.json section."""

from __future__ import annotations

import json
import math
import random

import pytest

from worker.errors import ModelError
from worker.model import ModelConfig, default_model_path, read_config
from worker.model.reference import PSI_FLOOR, ScoreReference


def uniform(n: int = 1000, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [rng.random() for _ in range(n)]


def test_deciles_of_distinct_scores() -> None:
    scores = [i / 1000 for i in range(1, 1001)]
    ref = ScoreReference.from_scores(scores, source="s")
    assert len(ref.edges) == 9 and ref.n == 1000 and ref.source == "s"
    assert ref.shares == pytest.approx([0.1] * 10, abs=1e-12)
    # each cut lies halfway between the two scores it separates, never on a score
    assert ref.edges[0] == pytest.approx(0.1005)
    assert not set(ref.edges) & set(scores)
    assert ref.bin_of(0.1) == 0 and ref.bin_of(0.101) == 1 and ref.bin_of(2.0) == 9
    assert ref.bin_of(-5.0) == 0


def test_bins_are_closed_on_the_right() -> None:
    ref = ScoreReference(edges=(0.5,), shares=(0.5, 0.5), n=2)
    assert ref.counts([0.5, 0.5000001, 0.2, math.nan]) == [2, 1]  # nan left out


def test_ties_give_fewer_bins_and_never_straddle_a_cut() -> None:
    scores = [0.1] * 70 + [0.4] * 20 + [0.9] * 10
    ref = ScoreReference.from_scores(scores)
    assert ref.edges == pytest.approx((0.25, 0.65))
    assert ref.shares == pytest.approx((0.7, 0.2, 0.1))
    assert ref.psi(scores) == 0.0
    constant = ScoreReference.from_scores([0.3] * 50)
    assert constant.edges == () and constant.shares == (1.0,)
    assert constant.psi([0.3, 0.9]) == 0.0


def test_psi_near_zero_on_its_own_scores_large_when_shifted() -> None:
    scores = uniform()
    ref = ScoreReference.from_scores(scores)
    assert ref.psi(scores) == pytest.approx(0.0, abs=1e-12)
    # float32 rounding of the same scores (a served score against its training-time value)
    assert ref.psi([float(f"{s:.7g}") for s in scores]) == pytest.approx(0.0, abs=1e-12)
    assert ref.psi(uniform(seed=1)) < 0.05  # another sample of the same distribution
    assert ref.psi([min(1.0, s + 0.3) for s in scores]) > 0.25
    assert ref.psi([0.99] * 100) > 2  # all in one bin: finite thanks to the floor


def test_psi_formula_and_floor() -> None:
    ref = ScoreReference(edges=(0.5,), shares=(0.8, 0.2), n=10)
    expected = (0.5 - 0.8) * math.log(0.5 / 0.8) + (0.5 - 0.2) * math.log(0.5 / 0.2)
    assert ref.psi([0.1, 0.9]) == pytest.approx(expected)
    floored = (1 - 0.8) * math.log(1 / 0.8) + (PSI_FLOOR - 0.2) * math.log(PSI_FLOOR / 0.2)
    assert ref.psi([0.1, 0.2]) == pytest.approx(floored)
    assert math.isnan(ref.psi([])) and math.isnan(ref.psi([math.nan]))
    assert ref.psi_of_counts([1, 1]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="2 bin counts"):
        ref.psi_of_counts([1, 1, 1])


def test_from_scores_refuses_what_it_cannot_bin() -> None:
    with pytest.raises(ValueError, match="at least one score"):
        ScoreReference.from_scores([])
    with pytest.raises(ValueError, match="finite"):
        ScoreReference.from_scores([0.1, math.inf])
    with pytest.raises(ValueError, match="bins"):
        ScoreReference.from_scores([0.1], bins=0)


def test_json_round_trip() -> None:
    ref = ScoreReference.from_scores(uniform(), source="validation users' examples")
    again = ScoreReference.from_json(json.loads(json.dumps(ref.to_json())), "c.json")
    assert again == ref


@pytest.mark.parametrize(("change", "message"), [
    ({"edges": [0.5, 0.2]}, "strictly ascending"),
    ({"edges": [0.2, "x"]}, "edges must be a list of numbers"),
    ({"shares": [0.5, 0.4]}, "sum to 1"),
    ({"shares": [1.0]}, "one more entry than edges"),
    ({"shares": [1.5, -0.5]}, r"in \[0, 1\]"),
    ({"n": 0}, "n must be an integer >= 1"),
    ({"n": 2.5}, "n must be an integer >= 1"),
    ({"source": None}, "source must be a string"),
])
def test_bad_sections_say_what_is_wrong(change: dict, message: str) -> None:
    good = {"edges": [0.5], "shares": [0.5, 0.5], "n": 4, "source": "s"}
    with pytest.raises(ModelError, match=f"^c.json score_reference: .*{message}"):
        ScoreReference.from_json({**good, **change}, "c.json score_reference")
    bad = {**good}
    del bad["n"]
    with pytest.raises(ModelError, match=r"missing keys \['n'\]"):
        ScoreReference.from_json(bad, "c.json score_reference")


def test_config_section_is_optional_and_round_trips() -> None:
    ref = ScoreReference.from_scores(uniform(), source="s")
    config = ModelConfig(name="m", version="1", text_dim=8, created="2026-01-01T00:00:00Z",
                         score_reference=ref)
    data = json.loads(json.dumps(config.to_json()))
    assert data["format"] == "intent-worker-model/2" and "score_reference" in data
    assert ModelConfig.from_json(data, "config.json") == config
    del data["score_reference"]  # a model directory from before the section: still loads
    older = ModelConfig.from_json(data, "config.json")
    assert older.score_reference is None and older.extra == {}
    assert "score_reference" not in older.to_json()
    with pytest.raises(ModelError, match="config.json score_reference: .*sum to 1"):
        ModelConfig.from_json({**data, "score_reference": {**ref.to_json(), "shares": [0.1] * 9
                                                           + [0.2]}}, "config.json")
    with pytest.raises(ModelError, match="config.json: score_reference must be a dict"):
        ModelConfig.from_json({**data, "score_reference": [1]}, "config.json")


def test_shipped_default_records_its_reference() -> None:
    config = read_config(default_model_path())
    ref = config.score_reference
    assert ref is not None and ref.n == config.counts["val"]["examples"]
    assert len(ref.shares) == 10 and "validation users" in ref.source
    assert config.label is not None and config.label.horizon_s == 600
    card = (default_model_path() / "README.md").read_text(encoding="utf-8")
    assert "**Score reference**" in card and f"n {ref.n:,} scores" in card
