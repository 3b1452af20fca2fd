"""train() records the shipped model's score distribution on its validation users' examples
(``score_reference``), for both window models, and the loaded model exposes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.synthetic import synthetic_events
from tests.support.tiny_model import write_tiny_encoder
from worker.dataset import build_examples, user_split
from worker.features import build_input
from worker.model import load_model, read_config
from worker.model.reference import ScoreReference
from worker.training import train

QUICK = {"max_tokens": 48, "max_chars": 300, "progress": False, "cv_folds": None,
         "time_frac": None}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_encoder(tmp_path_factory.mktemp("tiny") / "encoder", max_positions=64)


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return synthetic_events(users=80, seed=5)


def served_val_scores(model, events: list[dict]) -> list[float]:
    """The loaded model's scores (the worker's code path) of the validation users' examples."""
    examples = build_examples(events, max_events=50, window_seconds=3600)
    val = [e for e in examples if user_split(e.user_id) == "val"]
    price = getattr(model, "phrase_price", None)
    return model.score([build_input(e.window, max_chars=model.max_chars, phrase_price=price)
                        for e in val])


@pytest.mark.parametrize("window_model", ["pooled", "text"])
def test_train_records_the_validation_score_distribution(
        window_model: str, encoder: Path, events: list[dict], tmp_path: Path) -> None:
    out = tmp_path / "model"
    report = train(events, out_dir=out, encoder_dir_or_package=encoder,
                   window_model=window_model, **QUICK)
    config = read_config(out)
    ref = config.score_reference
    assert isinstance(ref, ScoreReference)
    assert ref.n == report.counts["val"]["examples"] > 0
    assert "validation users' examples" in ref.source
    assert 2 <= len(ref.shares) <= 10
    assert ScoreReference.from_json(ref.to_json(), "x") == ref

    model = load_model(out, device="cpu")
    assert model.config.score_reference == ref  # what the worker reads, for both kinds
    assert model.config.label.horizon_s == 600
    served = served_val_scores(model, events)
    assert len(served) == ref.n
    assert ref.psi(served) == pytest.approx(0.0, abs=1e-3)
    low, high = min(served), max(served)
    assert ref.psi([min(1.0, s + (high - low) / 2) for s in served]) > 0.25

    card = (out / "README.md").read_text(encoding="utf-8")
    line = next(x for x in card.splitlines() if x.startswith("**Score reference**"))
    assert f"n {ref.n:,} scores" in line
    assert f"edges {ref.edges[0]:.4g}, " in line


def test_no_validation_users_no_reference(encoder: Path, events: list[dict],
                                          tmp_path: Path) -> None:
    out = tmp_path / "model"
    train(events, out_dir=out, encoder_dir_or_package=encoder, val_frac=0.0, **QUICK)
    assert read_config(out).score_reference is None
    assert "**Score reference**: none" in (out / "README.md").read_text(encoding="utf-8")
