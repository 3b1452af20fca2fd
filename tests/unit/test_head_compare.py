"""loadtest.head_compare: the splits never share a user, and the summary counts wins honestly."""

from __future__ import annotations

import numpy as np

from loadtest.head_compare import Candidates, Data, compare, splits, summary, table


def synthetic(n: int = 900, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    users = np.array([f"u{i // 3}" for i in range(n)])
    text = rng.normal(size=(n, 8)).astype(np.float32)
    feats = rng.normal(size=(n, 4)).astype(np.float32)
    logit = 1.5 * feats[:, 0] + np.where(feats[:, 1] > 0.5, 1.5, 0.0) + text[:, 0] - 2.5
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return Data(vectors=text, features=feats, labels=labels, users=users)


def test_user_splits_are_disjoint_and_cover_every_example() -> None:
    data = synthetic()
    parts = splits(data, ["a", "b"])
    assert len(parts) == 10  # no examples: no time split
    for _, _, fit, score, stop in parts:
        assert not set(data.users[fit]) & set(data.users[score])
        assert len(fit) + len(score) == len(data.labels) and (stop == score).all()
    assert sorted(np.concatenate([p[3] for p in parts[:5]]).tolist()) == list(range(900))


def test_candidates_score_and_the_summary_compares_pairs() -> None:
    data = synthetic()
    results = compare(data, ["linear", "gbdt", "stack", "blend"], salts=["a"])
    rows = summary(results, reference="gbdt")
    assert set(rows) == {"linear", "gbdt", "stack", "blend"}
    assert rows["linear"]["splits"] == 5 and "vs_linear" not in rows["linear"]
    wins = sum(results[s]["blend"]["pr_auc"] > results[s]["linear"]["pr_auc"] for s in results)
    assert rows["blend"]["vs_linear"]["wins"] == wins
    assert 0.6 < rows["linear"]["roc_auc"]["mean"] <= 1.0  # the signal is learnable
    assert "| blend |" in table(rows, reference="gbdt")


def test_inner_folds_stay_inside_the_fit_users() -> None:
    data = synthetic()
    cands = Candidates(data)
    fit = np.arange(600)
    inner = cands._inner(fit, "a")
    assert set(inner.tolist()) == set(range(5))
    for k in range(5):  # a user's examples share one inner fold
        held = set(data.users[fit[inner == k]])
        assert not held & set(data.users[fit[inner != k]])
