"""Cooldown and deduplication of alerts per (user, kind), in event time."""

from __future__ import annotations

import pytest

from worker.anomaly import Alert, Cooldown, CooldownEntry, alert_id
from worker.anomaly.cooldown import RECENT, merge_recent
from worker.errors import ConfigError

T0 = 1_700_000_000_000
MIN = 60_000


def alert(ts: int, *ids: str, kind: str = "purchase_velocity", user: str = "u1") -> Alert:
    ids = ids or (f"e{ts}",)
    return Alert(alert_id=alert_id(kind, user, ids), user_id=user, kind=kind, severity="medium",
                 evidence={"event_ids": list(ids), "thresholds": {}}, event_ts=ts)


def test_first_alert_goes_out_and_is_remembered() -> None:
    cd = Cooldown(1800)
    a = alert(T0)
    sent, updates = cd.apply([a], {})
    assert sent == [a]
    assert updates == {("u1", "purchase_velocity"): [CooldownEntry(T0, a.alert_id)]}


def test_alerts_within_the_cooldown_are_dropped_per_user_and_kind() -> None:
    cd = Cooldown(1800)
    state = {("u1", "purchase_velocity"): CooldownEntry(T0, "x")}
    sent, updates = cd.apply([
        alert(T0 + 29 * MIN),                            # same user and kind: dropped
        alert(T0 + 29 * MIN, kind="bot_cadence"),        # other kind: goes
        alert(T0 + 29 * MIN, user="u2"),                 # other user: goes
        alert(T0 + 30 * MIN, "late"),                    # cooldown over (inclusive): goes
    ], state)
    assert sorted((a.event_ts, a.user_id, a.kind) for a in sent) == [
        (T0 + 29 * MIN, "u1", "bot_cadence"), (T0 + 29 * MIN, "u2", "purchase_velocity"),
        (T0 + 30 * MIN, "u1", "purchase_velocity")]
    assert [a.event_ts for a in sent] == sorted(a.event_ts for a in sent)
    assert [e.event_ts for e in updates[("u1", "purchase_velocity")]] == [T0 + 30 * MIN]
    assert state == {("u1", "purchase_velocity"): CooldownEntry(T0, "x")}  # not mutated


def test_candidates_of_one_batch_are_taken_in_event_time_order() -> None:
    cd = Cooldown(1800)
    later, earlier = alert(T0 + 5 * MIN, "b"), alert(T0, "a")
    sent, updates = cd.apply([later, earlier], {})
    assert sent == [earlier]
    assert [e.alert_id for e in updates[("u1", "purchase_velocity")]] == [earlier.alert_id]


def test_a_redelivered_alert_that_was_delivered_is_not_sent_again() -> None:
    cd = Cooldown(1800)
    a = alert(T0, "b1", "b2")
    sent, updates = cd.apply([a], {})
    assert sent == [a]
    # the state is written after delivery: a redelivered batch finds the alert there
    sent_again, updates_again = cd.apply([a], updates)
    assert sent_again == [] and updates_again == {}
    # not delivered (state not written): the redelivery sends it, with the same id
    assert cd.apply([a], {})[0] == [a]
    # the same alert twice in one call goes out once
    assert cd.apply([a, a], {})[0] == [a]


def test_out_of_order_alerts_long_before_the_last_one() -> None:
    cd = Cooldown(1800)
    state = {("u1", "purchase_velocity"): CooldownEntry(T0 + 120 * MIN, "x")}
    old = alert(T0)  # 2 hours before the last one: its own incident
    near = alert(T0 + 100 * MIN)  # 20 minutes before the last one: same incident
    sent, updates = cd.apply([old, near], state)
    assert sent == [old]
    # remembered as delivered; the distance rule still measures from the newest (T0 + 120)
    merged = merge_recent([state[("u1", "purchase_velocity")]],
                          updates[("u1", "purchase_velocity")])
    assert [e.event_ts for e in merged] == [T0, T0 + 120 * MIN]
    assert cd.apply([near], {("u1", "purchase_velocity"): merged})[0] == []


def test_suppresses_all() -> None:
    cd = Cooldown(1800)
    state = {("u1", "out_of_character_purchase"): CooldownEntry(T0, "x")}
    kind = "out_of_character_purchase"
    assert cd.suppresses_all("u1", kind, [T0 + MIN, T0 - MIN], state)
    assert not cd.suppresses_all("u1", kind, [T0 + MIN, T0 + 31 * MIN], state)
    assert not cd.suppresses_all("u2", kind, [T0], state)


def test_zero_cooldown_only_dedupes_identical_alerts() -> None:
    cd = Cooldown(0)
    a, b = alert(T0, "a"), alert(T0, "b")
    assert cd.apply([a, b, a], {})[0] == sorted([a, b], key=lambda x: x.alert_id)


def test_entries_round_trip_and_bad_ones_are_refused() -> None:
    entry = CooldownEntry(T0, "abc")
    assert CooldownEntry.from_dict(entry.to_dict()) == entry
    with pytest.raises(ConfigError):
        CooldownEntry.from_dict({"ts": "soon"})
    with pytest.raises(ConfigError, match="cooldown_s"):
        Cooldown(-1)


def test_several_delivered_alerts_are_all_remembered_across_redeliveries() -> None:
    # two alerts of one kind further apart than the cooldown, both delivered; the worker dies
    # before committing: redelivered, neither goes out again
    cd = Cooldown(1800)
    a1, a2 = alert(T0, "x1"), alert(T0 + 2000 * 1000, "x2")
    sent, updates = cd.apply([a1, a2], {})
    assert sent == [a1, a2]
    state = {k: merge_recent([], v) for k, v in updates.items()}
    assert cd.apply([a1, a2], state)[0] == []


def test_exactly_once_mode_resends_delivered_alerts() -> None:
    cd = Cooldown(1800, resend_delivered=True)
    a = alert(T0)
    _, updates = cd.apply([a], {})
    assert cd.apply([a], updates)[0] == [a]  # same id again: read-committed consumers dedupe
    assert cd.apply([alert(T0 + MIN, "other")], updates)[0] == []  # the cooldown still holds


def test_merge_recent_keeps_the_newest_few_once_each() -> None:
    entries = [CooldownEntry(T0 + i, f"id{i}") for i in range(RECENT + 3)]
    merged = merge_recent(entries[:5], entries[3:])
    assert [e.alert_id for e in merged] == [f"id{i}" for i in range(3, RECENT + 3)]
