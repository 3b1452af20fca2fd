"""Fine-tuning the pooled model: torch pooling equals the serving pooling, the head folds back
exactly, the best epoch is kept, the encoder moves, a saved model serves the training scores,
and the hold-out users' labels never reach the gradient."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.synthetic import synthetic_events
from tests.support.tiny_model import TINY_DIM, write_tiny_encoder
from worker.dataset import build_examples
from worker.dataset.split import inner_user_split
from worker.features import FEATURE_NAMES, build_input
from worker.model import ModelConfig, save_model_dir
from worker.model.config import WindowModelSection
from worker.model.encoder import load_encoder
from worker.model.loading import load_model
from worker.model.pooled import PooledHead, layer_norm, pool
from worker.training import pooled_finetune
from worker.training.pooled_finetune import (
    InputScales,
    PooledTorchModel,
    finetune_pooled,
    inner_indices,
    serving_model,
    torch_pool,
)

HALF_LIFE = 300.0
SETTINGS = {"components": 2, "epochs": 2, "batch_size": 32, "head_lr": 1e-2,
            "encoder_lr": 1e-3, "patience": 5, "phrase_max_tokens": 32}


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_encoder(tmp_path_factory.mktemp("tiny") / "encoder", max_positions=64)


@pytest.fixture(scope="module")
def data() -> tuple[list, list[int], list[int], list[int]]:
    examples = build_examples(synthetic_events(users=60, seed=1), horizon_s=600, max_events=50,
                              window_seconds=3600)
    inputs = [build_input(e.window, max_chars=0, phrase_price="bucket") for e in examples]
    labels = [e.label for e in examples]
    train, hold = inner_indices([e.user_id for e in examples], range(len(examples)),
                                seed="t", frac=0.3)
    return inputs, labels, train, hold


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Hold-out scores by epoch (0 first), in place of the measured ones."""
    scores: list[float] = []

    def score(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
        return scores.pop(0), 0.5

    monkeypatch.setattr(pooled_finetune, "_selection_score", score)
    yield scores


def encoder_params(encoder: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in encoder.parameters()])


def test_torch_pool_matches_the_serving_pool() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(5, 6))
    rows = [[2, 0, 1], [3], [1, 1], [4, 0, 0, 2]]
    ages = [[0.0, 60.0, 900.0], [0.0], [0.0, 30.0], [0.0, 5.0, 3000.0, 7000.0]]
    want = pool(rows, ages, layer_norm(raw), HALF_LIFE)
    vectors = torch.tensor(raw, dtype=torch.float64, requires_grad=True)
    normed = torch.nn.functional.layer_norm(vectors, (6,), eps=1e-5)
    mean, newest, cos = torch_pool(normed, rows, ages, HALF_LIFE)
    assert np.allclose(mean.detach().numpy(), want.mean)
    assert np.allclose(newest.detach().numpy(), want.newest)
    assert np.allclose(cos.detach().numpy(), want.cos) and float(cos[1].detach()) == 0.0
    (mean.sum() + newest.sum() + cos.sum()).backward()  # a one-event window: no NaN gradient
    assert torch.isfinite(vectors.grad).all()
    with pytest.raises(ValueError, match="empty"):
        torch_pool(normed, [[0], []], [[0.0], []], HALF_LIFE)


def test_the_standardised_head_folds_back_exactly(encoder_dir: Path) -> None:
    rng = np.random.default_rng(1)
    n = len(FEATURE_NAMES) + 2 * TINY_DIM + 1
    head = PooledHead(rng.normal(size=len(FEATURE_NAMES)), rng.normal(size=TINY_DIM),
                      rng.normal(size=TINY_DIM), 0.3, -1.2)
    scales = InputScales(rng.normal(size=n), rng.uniform(0.5, 3.0, size=n))
    model = PooledTorchModel(load_encoder(encoder_dir), head, scales, half_life_s=HALF_LIFE,
                             max_tokens=32)
    back = model.export()
    for name in ("feature_weight", "mean_weight", "newest_weight"):
        assert np.allclose(getattr(back, name), getattr(head, name), rtol=1e-5, atol=1e-6)
    assert back.cos_weight == pytest.approx(head.cos_weight, rel=1e-5)
    assert back.bias == pytest.approx(head.bias, abs=1e-4)


def test_a_saved_fine_tuned_model_serves_the_training_scores(
        encoder_dir: Path, data: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs, labels, train, hold = data
    built: list[PooledTorchModel] = []

    class Recorded(PooledTorchModel):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            built.append(self)

    monkeypatch.setattr(pooled_finetune, "PooledTorchModel", Recorded)
    encoder, head, info = finetune_pooled(encoder_dir, inputs, labels, train, hold,
                                          half_life_s=HALF_LIFE, **SETTINGS)
    assert info["epochs_run"] == 2 and info["history"][0]["epoch"] == 0
    # the training model as training left it: standardised head, torch pooling, float32
    (trained,) = built
    with torch.inference_mode():
        want = torch.sigmoid(trained.logits(inputs)).numpy()
    config = ModelConfig(name="ft", version="1", text_dim=TINY_DIM, max_tokens=32, max_chars=200,
                         window_model=WindowModelSection(
                             kind="pooled", half_life_s=HALF_LIFE, phrase_price="bucket",
                             phrase_max_tokens=SETTINGS["phrase_max_tokens"]))
    path = save_model_dir(tmp_path / "model", head=head, config=config, encoder=encoder)
    served = np.asarray(load_model(path, device="cpu").score(inputs))
    assert np.abs(served - want).max() < 2e-4  # float16 vectors in serving
    in_memory = serving_model(encoder, head, half_life_s=HALF_LIFE,
                              phrase_max_tokens=SETTINGS["phrase_max_tokens"])
    assert np.allclose(in_memory.score(inputs), served, atol=1e-9)


def test_the_best_epoch_is_kept_and_the_encoder_moves(encoder_dir: Path, data: tuple,
                                                      scripted: list[float]) -> None:
    inputs, labels, train, hold = data
    settings = {**SETTINGS, "epochs": 6, "patience": 2}
    scripted[:] = [0.5, 0.7, 0.9, 0.6, 0.4, 0.95, 0.99]
    encoder, head, info = finetune_pooled(encoder_dir, inputs, labels, train, hold, **settings)
    assert (info["best_epoch"], info["epochs_run"]) == (2, 4)  # stopped after 2 stale epochs
    shifts = [h["encoder_shift"] for h in info["history"]]
    assert shifts[2] > 0 and shifts[4] != shifts[2]  # the last epoch's weights differ
    assert not torch.equal(encoder_params(encoder), encoder_params(load_encoder(encoder_dir)))

    scripted[:] = [0.5, 0.7, 0.9]
    at_two, head_two, _ = finetune_pooled(encoder_dir, inputs, labels, train, hold,
                                          **{**settings, "epochs": 2})
    assert torch.equal(encoder_params(encoder), encoder_params(at_two))
    assert np.array_equal(head.mean_weight, head_two.mean_weight)


def test_no_better_epoch_returns_the_frozen_start(encoder_dir: Path, data: tuple,
                                                  scripted: list[float]) -> None:
    inputs, labels, train, hold = data
    scripted[:] = [0.9, 0.8, 0.7]
    encoder, _, info = finetune_pooled(encoder_dir, inputs, labels, train, hold, **SETTINGS)
    assert info["best_epoch"] == 0
    assert torch.equal(encoder_params(encoder), encoder_params(load_encoder(encoder_dir)))


def test_hold_out_labels_never_reach_the_gradient(encoder_dir: Path, data: tuple,
                                                  scripted: list[float]) -> None:
    """With the same stopping decisions, flipping every hold-out label changes nothing that
    was trained: a fit that learnt from hold-out rows (in the frozen start or the epochs)
    would differ."""
    inputs, labels, train, hold = data
    flipped = list(labels)
    for i in hold:
        flipped[i] = 1 - flipped[i]
    runs = []
    for y in (labels, flipped):
        scripted[:] = [0.1, 0.2, 0.3]
        runs.append(finetune_pooled(encoder_dir, inputs, y, train, hold, **SETTINGS))
    (enc_a, head_a, info_a), (enc_b, head_b, info_b) = runs
    assert info_a["init"] == info_b["init"]
    assert [h["train_loss"] for h in info_a["history"]] == \
        [h["train_loss"] for h in info_b["history"]]
    assert torch.equal(encoder_params(enc_a), encoder_params(enc_b))
    assert np.array_equal(head_a.feature_weight, head_b.feature_weight)


def test_inner_indices_split_by_user_as_the_examples_split() -> None:
    examples = build_examples(synthetic_events(users=40, seed=2), horizon_s=600, max_events=50,
                              window_seconds=3600)
    users = [e.user_id for e in examples]
    fit_idx = list(range(0, len(examples), 2))
    train, hold = inner_indices(users, fit_idx, seed="s")
    want_train, want_hold = inner_user_split([examples[i] for i in fit_idx], seed="s")
    assert [examples[i] for i in train] == want_train
    assert [examples[i] for i in hold] == want_hold
    assert hold and not {users[i] for i in train} & {users[i] for i in hold}


def test_bad_arguments_are_refused(encoder_dir: Path, data: tuple) -> None:
    inputs, labels, train, hold = data
    with pytest.raises(ValueError, match="share rows"):
        finetune_pooled(encoder_dir, inputs, labels, train, [*hold, train[0]])
    with pytest.raises(ValueError, match="hold-out rows"):
        finetune_pooled(encoder_dir, inputs, labels, train, [])
    with pytest.raises(ValueError, match="encoder_lr"):
        finetune_pooled(encoder_dir, inputs, labels, train, hold, encoder_lr=1e-2, head_lr=1e-3)
    no_sequence = list(inputs)
    no_sequence[hold[0]] = replace(inputs[hold[0]], events=None)
    with pytest.raises(ValueError, match="phrase_price"):
        finetune_pooled(encoder_dir, no_sequence, labels, train, hold)
