"""loadtest.finetune_compare: train's user folds, fine-tuning that never sees the scored users,
and an honest paired summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest
from scipy.stats import t as student_t

from loadtest import finetune_compare
from loadtest.finetune_compare import compare, fold_indices, load, main, summary, table
from tests.support.synthetic import synthetic_events
from tests.support.tiny_model import write_tiny_encoder
from worker.dataset.split import user_fold
from worker.training import pooled_finetune

FAST = {"epochs": 1, "batch_size": 64, "head_lr": 1e-2, "encoder_lr": 1e-3, "patience": 1}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ftc")
    events = root / "events.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in synthetic_events(users=80, seed=4)))
    return events, write_tiny_encoder(root / "encoder", max_positions=64)


def test_folds_are_trains_user_folds() -> None:
    users = [f"u{i // 3}" for i in range(300)]
    parts = fold_indices(users, folds=5, seed="s")
    assert [k for k, _, _ in parts] == list(range(5))
    for k, fit, scored in parts:
        assert sorted(fit + scored) == list(range(300))
        assert all(user_fold(users[i], seed="s", folds=5) == k for i in scored)
        assert not {users[i] for i in fit} & {users[i] for i in scored}


def test_fine_tuning_never_sees_the_scored_users(files: tuple[Path, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    events, encoder = files
    data = load(events, "jsonl")
    calls = []
    real = pooled_finetune.finetune_pooled

    def spy(encoder_dir, inputs, labels, train_idx, hold_idx, **kwargs):  # noqa: ANN001, ANN003
        calls.append((list(train_idx), list(hold_idx)))
        return real(encoder_dir, inputs, labels, train_idx, hold_idx, **kwargs)

    monkeypatch.setattr(pooled_finetune, "finetune_pooled", spy)
    result = compare(data, encoder, folds=3, seed="s", max_folds=2, finetune=FAST, components=2)
    rows = result["per_fold"]
    assert len(rows) == len(calls) == 2
    for row, (train, hold) in zip(rows, calls, strict=True):
        k = row["fold"]
        _, fit, scored = fold_indices(data.users, folds=3, seed="s")[k]
        assert sorted(train + hold) == sorted(fit)  # the fit users, all of them, only them
        assert hold and not {data.users[i] for i in train} & {data.users[i] for i in hold}
        assert not {data.users[i] for i in train + hold} & {data.users[i] for i in scored}
        assert set(row) >= {"frozen", "finetuned", "finetuned_refit", "seconds", "finetune"}
        assert row["counts"]["scored"] == len(scored)
        for model in finetune_compare.MODELS:
            assert 0.0 <= row[model]["pr_auc"] <= 1.0


def test_summary_pairs_the_folds() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for k in range(5):
        base = rng.uniform(0.1, 0.3)
        rows.append({"fold": k, "seconds": {"frozen": 1.0, "finetuned": 10.0 + k},
                     "finetune": {"best_epoch": 1, "epochs_run": 2},
                     "frozen": {"pr_auc": base, "roc_auc": 0.7},
                     "finetuned": {"pr_auc": base + (0.01 if k < 3 else -0.02),
                                   "roc_auc": 0.7 + 0.001 * k}})
    s = summary(rows)
    assert "finetuned_refit" not in s and s["folds"] == 5
    d = s["finetuned"]["pr_auc_minus_frozen"]
    diffs = np.array([0.01] * 3 + [-0.02] * 2)
    assert d["folds_won"] == 3 and d["mean"] == pytest.approx(diffs.mean())
    half = student_t.ppf(0.975, 4) * diffs.std(ddof=1) / np.sqrt(5)
    assert d["ci95"] == pytest.approx([diffs.mean() - half, diffs.mean() + half])
    assert s["finetuned"]["roc_auc_minus_frozen"]["folds_won"] == 4  # fold 0 ties: not won
    assert s["finetuned"]["seconds_per_fold"] == pytest.approx(12.0)
    assert "| finetuned |" in table(rows, s)


def test_main_writes_the_json(files: tuple[Path, Path], tmp_path: Path) -> None:
    events, encoder = files
    import torch

    out = tmp_path / "ft.json"
    threads = torch.get_num_threads()
    try:
        main([str(events), "--format", "jsonl", "--encoder", str(encoder), "--folds", "3",
              "--max-folds", "1", "--epochs", "1", "--batch-size", "64", "--encoder-lr",
              "1e-3", "--head-lr", "1e-2", "--components", "2", "--no-refit", "--threads", "1",
              "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    doc = json.loads(out.read_text())
    assert doc["complete"] and doc["summary"]["folds"] == 1
    assert "finetuned_refit" not in doc["summary"]
    assert doc["settings"]["epochs"] == 1 and doc["per_fold"][0]["finetune"]["history"]
    assert doc["command"].startswith("python -m loadtest.finetune_compare")
