"""The GBDT baseline: features, fit/predict on synthetic examples, stopping on an inner split of
the training users, save/load, errors."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from worker.dataset.examples import Example
from worker.dataset.split import inner_user_split
from worker.errors import ModelError
from worker.features import FEATURE_NAMES
from worker.training.baseline import (
    BASELINE_FEATURE_NAMES,
    CATEGORICAL_NAMES,
    MIN_CATEGORY_COUNT,
    Baseline,
    baseline_features,
    fit_baseline,
    fit_baseline_stopped_on,
    fit_vocab,
    load_baseline,
    window_categories,
)

T0 = 1_570_000_000_000


def window(user: int, n: int, cart: bool) -> tuple[dict, ...]:
    events = []
    for i in range(n):
        kind = "add_to_cart" if cart and i == n - 1 else "view"
        events.append({"event_id": f"{user}-{i}", "user_id": f"u{user}", "event_type": kind,
                       "ts": T0 + i * 30_000, "session_id": f"s{user}",
                       "product": {"id": str(i % 2), "category": "electronics.smartphone",
                                   "brand": "apple", "price": 100.0 + i}})
    return tuple(events)


def examples(count: int, seed: int) -> list[Example]:
    """A window ending in a cart is bought 70% of the time, a view 5%."""
    rng = random.Random(seed)
    out = []
    for u in range(count):
        cart = rng.random() < 0.3
        label = int(rng.random() < (0.7 if cart else 0.05))
        w = window(u, rng.randint(1, 6), cart)
        out.append(Example(user_id=f"u{u}", event_id=w[-1]["event_id"], ts=w[-1]["ts"],
                           window=w, label=label))
    return out


@pytest.fixture(scope="module")
def data() -> tuple[list[Example], list[Example]]:
    return examples(600, 1), examples(200, 2)


def test_features_follow_the_names() -> None:
    w = window(1, 4, True)
    values = baseline_features(w)
    assert len(values) == len(BASELINE_FEATURE_NAMES) - len(CATEGORICAL_NAMES)
    assert BASELINE_FEATURE_NAMES[: len(FEATURE_NAMES)] == FEATURE_NAMES
    assert BASELINE_FEATURE_NAMES[-len(CATEGORICAL_NAMES):] == CATEGORICAL_NAMES
    named = dict(zip(BASELINE_FEATURE_NAMES, values, strict=False))
    assert named["newest_is_cart"] == 1.0 and named["newest_is_view"] == 0.0
    assert named["newest_product_views_log"] == pytest.approx(math.log1p(1))  # viewed once
    assert named["session_events_log"] == pytest.approx(math.log1p(4))
    assert baseline_features(list(reversed(w))) == values  # order of the input does not matter


def test_categories_and_vocabulary() -> None:
    w = window(1, 2, False)
    assert window_categories(w) == ("electronics.smartphone", "electronics", "apple")
    bare = [{**w[-1], "product": {"id": "9"}}]
    assert window_categories(bare) == (None, None, None)
    vocab = fit_vocab([w] * MIN_CATEGORY_COUNT + [[{**w[-1], "product": {"id": "1",
                                                    "category": "rare.thing"}}]])
    assert vocab == {"newest_category": ["electronics.smartphone"],
                     "newest_category_top": ["electronics"], "newest_brand": ["apple"]}
    unseen = [{**w[-1], "product": {"id": "1", "category": "apparel.shoes", "brand": "Apple "}}]
    x = Baseline(model=None, vocab=vocab).matrix([w, bare, unseen])
    assert x.shape == (3, len(BASELINE_FEATURE_NAMES))
    assert x[:, -3:].tolist() == [[2, 2, 2], [0, 0, 0], [1, 1, 2]]  # known, missing, unseen


def test_fit_and_predict(data: tuple[list[Example], list[Example]], tmp_path: Path) -> None:
    train, val = data
    model = fit_baseline(train, stop_on="loss")
    p = model.predict_proba([e.window for e in val])
    assert p.shape == (len(val),) and np.all((p >= 0) & (p <= 1))
    y = np.array([e.label for e in val])
    assert p[y == 1].mean() > p[y == 0].mean() + 0.3
    # prior-corrected: the mean score is near the base rate, not near 0.5
    assert abs(p.mean() - np.mean([e.label for e in train])) < 0.08
    assert model.info["scoring"] == "loss" and model.info["n_iter"] >= 1
    again = fit_baseline(train, stop_on="loss")
    assert np.array_equal(again.predict_proba([e.window for e in val]), p)  # fixed seed

    model.save(tmp_path)
    info = json.loads((tmp_path / "baseline.json").read_text())
    assert info["feature_names"] == list(BASELINE_FEATURE_NAMES)
    assert info["vocab"] == model.vocab and model.vocab["newest_brand"] == ["apple"]
    loaded = load_baseline(tmp_path)
    assert loaded.vocab == model.vocab
    assert np.allclose(loaded.predict_proba([e.window for e in val]), p)
    assert loaded.predict_proba([]).shape == (0,)


def test_stopping_choices(data: tuple[list[Example], list[Example]]) -> None:
    by_ap = fit_baseline_stopped_on(data[0], data[1])  # the default: like the BERT head
    assert by_ap.info["scoring"] == "average_precision"
    assert by_ap.info["stop_examples"] == len(data[1])
    assert by_ap.model.n_iter_ == by_ap.info["n_iter"]  # refitted up to the best tree
    p = by_ap.predict_proba([e.window for e in data[1]])
    y = np.array([e.label for e in data[1]])
    assert p[y == 1].mean() > p[y == 0].mean()
    probe = fit_baseline_stopped_on(data[0], data[1], refit=False)
    assert probe.info["n_iter"] == by_ap.info["n_iter"] <= probe.model.n_iter_
    negatives = [e for e in data[1] if e.label == 0]  # AP undefined: falls back to loss
    assert fit_baseline_stopped_on(data[0], negatives).info["scoring"] == "loss"
    with pytest.raises(ValueError, match="stop_on"):
        fit_baseline_stopped_on(data[0], data[1], stop_on="auc")
    with pytest.raises(ValueError, match="stopping examples"):
        fit_baseline_stopped_on(data[0], [])


def test_trees_are_chosen_on_an_inner_split_of_the_fit_users(
        data: tuple[list[Example], list[Example]]) -> None:
    fit = data[0] + data[1]
    model = fit_baseline(fit, split_seed="s")
    inner_fit, hold = inner_user_split(fit, seed="s")
    assert hold and not {e.user_id for e in inner_fit} & {e.user_id for e in hold}
    probe = fit_baseline_stopped_on(inner_fit, hold, refit=False)
    assert model.info["n_iter"] == probe.info["n_iter"] == model.model.n_iter_
    assert model.info["scoring"] == "average_precision"
    held = {e.user_id for e in hold}
    assert model.info["stopped_on"] == f"inner split of training users ({len(held)} users)"
    assert model.info["inner_split"]["stop"] == {
        "examples": len(hold), "positives": sum(e.label for e in hold),
        "positive_rate": sum(e.label for e in hold) / len(hold), "users": len(held)}
    # refitted on all fit users: their class ratio and categories, every example counted
    assert model.info["train_examples"] == len(fit)
    y = np.array([e.label for e in fit])
    assert model.pos_weight == pytest.approx((y == 0).sum() / (y == 1).sum())
    assert model.vocab == fit_vocab([e.window for e in fit])


def test_examples_outside_the_fit_part_choose_nothing(
        data: tuple[list[Example], list[Example]]) -> None:
    """The baseline takes no validation examples: the same fit examples give the same model
    whatever the scored users are; with the old fit_baseline(train, val) a change of the val
    labels moved its trees."""
    train, val = data
    windows = [e.window for e in val]
    flipped = [Example(user_id=e.user_id, event_id=e.event_id, ts=e.ts, window=e.window,
                       label=1 - e.label) for e in val]
    # stopping on val (the old behaviour) depends on the val labels ...
    assert not np.array_equal(fit_baseline_stopped_on(train, val).predict_proba(windows),
                              fit_baseline_stopped_on(train, flipped).predict_proba(windows))
    # ... fit_baseline cannot be given them at all
    with pytest.raises(TypeError):
        fit_baseline(train, val)  # type: ignore[misc]


def test_no_inner_users_to_stop_on_gives_max_iter(
        data: tuple[list[Example], list[Example]]) -> None:
    one_user = [Example(user_id="u1", event_id=e.event_id, ts=e.ts, window=e.window,
                        label=e.label) for e in data[0]]
    model = fit_baseline(one_user, max_iter=7)
    assert model.info["n_iter"] == 7 and model.info["scoring"] is None
    assert model.info["stopped_on"].startswith("nothing")


def test_needs_both_classes(data: tuple[list[Example], list[Example]]) -> None:
    negatives = [e for e in data[0] if e.label == 0]
    with pytest.raises(ValueError, match="both classes"):
        fit_baseline(negatives)


def test_load_errors(data: tuple[list[Example], list[Example]], tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        load_baseline(tmp_path)
    fit_baseline(data[0], max_iter=5).save(tmp_path)
    info = json.loads((tmp_path / "baseline.json").read_text())
    info["feature_names"] = info["feature_names"][:-1]
    (tmp_path / "baseline.json").write_text(json.dumps(info))
    with pytest.raises(ModelError, match="feature_names"):
        load_baseline(tmp_path)
