"""User split (stable, no leakage), inner split of a part (by user), time split (a cut, with
the horizon purged)."""

from __future__ import annotations

from collections import Counter

import pytest

from worker.dataset.examples import Example
from worker.dataset.split import inner_user_split, time_split, user_split

USERS = [f"user-{i}" for i in range(5000)]


def test_user_split_is_deterministic_and_seeded() -> None:
    first = [user_split(u) for u in USERS]
    assert first == [user_split(u) for u in USERS]
    # pinned values: the split must not change between versions or machines
    assert [user_split(u) for u in USERS[:8]] == [user_split(u, seed="intent-v1")
                                                  for u in USERS[:8]]
    other = [user_split(u, seed="another") for u in USERS]
    assert first != other


def test_user_split_fractions() -> None:
    parts = Counter(user_split(u, val_frac=0.2, test_frac=0.1) for u in USERS)
    assert abs(parts["val"] / len(USERS) - 0.2) < 0.03
    assert abs(parts["test"] / len(USERS) - 0.1) < 0.03
    assert parts["train"] + parts["val"] + parts["test"] == len(USERS)
    assert "test" not in {user_split(u) for u in USERS}  # test_frac defaults to 0


def test_growing_val_only_moves_users_out_of_train() -> None:
    small = {u: user_split(u, val_frac=0.1) for u in USERS}
    large = {u: user_split(u, val_frac=0.3) for u in USERS}
    assert all(large[u] == "val" for u in USERS if small[u] == "val")


def test_no_user_in_two_parts() -> None:
    examples = [(u, i) for u in USERS[:300] for i in range(4)]
    part_of: dict[str, set[str]] = {}
    for user, _ in examples:
        part_of.setdefault(user, set()).add(user_split(user))
    assert all(len(p) == 1 for p in part_of.values())


def test_bad_fractions() -> None:
    with pytest.raises(ValueError):
        user_split("u", val_frac=0.6, test_frac=0.4)
    with pytest.raises(ValueError):
        user_split("u", val_frac=-0.1)


def example(ts: int, user: str = "u") -> Example:
    return Example(user_id=user, event_id=f"e{ts}", ts=ts, window=(), label=0)


def test_time_split_cut_and_purge() -> None:
    examples = [example(t * 1000) for t in range(100)]
    before, after, cut = time_split(examples, 0.2)
    assert cut == 80_000
    assert [e.ts for e in after] == [t * 1000 for t in range(80, 100)]
    assert [e.ts for e in before] == [t * 1000 for t in range(80)]
    before, after, _ = time_split(examples, 0.2, horizon_s=10)
    assert max(e.ts for e in before) == 70_000  # labels of earlier examples end by the cut
    assert len(after) == 20


def test_time_split_edge_cases() -> None:
    assert time_split([], 0.5) == ([], [], 0)
    with pytest.raises(ValueError):
        time_split([example(1)], 1.0)


def test_user_fold_agrees_with_user_split() -> None:
    from worker.dataset.split import user_fold

    users = [f"u{i}" for i in range(2000)]
    folds = [user_fold(u, folds=5) for u in users]
    assert set(folds) == set(range(5))
    assert all((f == 0) == (user_split(u, val_frac=0.2) == "val")
               for u, f in zip(users, folds, strict=True))
    with pytest.raises(ValueError):
        user_fold("u1", folds=1)


def test_inner_split_holds_out_users_of_any_part() -> None:
    examples = [Example(user_id=u, event_id=f"{u}-{k}", ts=k, window=(), label=k % 2)
                for u in USERS[:2000] for k in range(3)]
    train = [e for e in examples if user_split(e.user_id) == "train"]
    fit, hold = inner_user_split(train)
    assert not {e.user_id for e in fit} & {e.user_id for e in hold}  # no user straddles
    assert sorted(fit + hold, key=lambda e: e.event_id) == sorted(train,
                                                                  key=lambda e: e.event_id)
    # salted apart from the outer split: about 20 % of the train users, not none of them
    share = len({e.user_id for e in hold}) / len({e.user_id for e in train})
    assert 0.17 < share < 0.23
    assert inner_user_split(train) == (fit, hold)  # deterministic
    other_fit, _ = inner_user_split(train, seed="alt-1")
    assert other_fit != fit
    with pytest.raises(ValueError):
        inner_user_split(train, frac=0)
