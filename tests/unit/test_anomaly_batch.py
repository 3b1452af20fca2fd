"""BatchDetector, the one entry point of the detectors, on the memory stores."""

from __future__ import annotations

import pytest

from worker.anomaly import BatchDetector, DetectorConfig
from worker.anomaly.state import MemoryDetectorState, state_for
from worker.windows import MemoryWindowStore

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000


def event(eid: str, ts: int, etype: str = "view", *, pid: str = "p1", user: str = "u1") -> dict:
    return {"event_id": eid, "user_id": user, "event_type": etype, "ts": ts,
            "product": {"id": pid, "category": "phones", "price": 100.0}}


def burst(n: int = 8) -> dict[str, list[dict]]:
    views = [event(f"v{i}", T0 + i * 1000) for i in range(3)]
    return {"u1": views + [event(f"b{i}", T0 + 10_000 + i * 20_000, "purchase")
                           for i in range(n)]}


def detector() -> BatchDetector:
    windows = MemoryWindowStore(max_events=50, span_ms=HOUR_MS)
    return BatchDetector(DetectorConfig(), MemoryDetectorState(windows))


async def test_alerts_are_remembered_only_once_confirmed() -> None:
    det = detector()
    got = await det.exchange(burst())
    assert [e["event_id"] for e in got.windows["u1"]][:3] == ["v0", "v1", "v2"]
    assert got.samples == {"phones": []}  # read before this batch's prices were added
    first = await det.alerts(got, burst())
    assert [a.kind for a in first.emitted] == ["purchase_velocity"]
    again = await det.alerts(await det.exchange(burst()), burst())  # redelivered, unconfirmed
    assert [a.alert_id for a in again.emitted] == [a.alert_id for a in first.emitted]
    await det.confirm(first.cooldown_updates)
    redelivered = await det.alerts(await det.exchange(burst()), burst())
    assert redelivered.candidates and redelivered.emitted == []


async def test_worth_scoring_skips_priors_the_cooldown_would_drop() -> None:
    det = detector()
    views = {"u1": [event(f"v{i}", T0 + i * 1000) for i in range(3)]}
    await det.exchange(views)
    buy = {"u1": [event("buy", T0 + 5000, "purchase", pid="other")]}
    got = await det.exchange(buy)
    priors = det.prior_windows(got.windows, buy)
    assert [p.purchase_id for p in priors] == ["buy"]
    assert await det.worth_scoring(priors) == priors
    found = await det.alerts(got, buy, prior_scores={"buy": 0.0})
    assert [a.kind for a in found.emitted] == ["out_of_character_purchase"]
    await det.confirm(found.cooldown_updates)
    assert await det.worth_scoring(priors) == []
    assert await det.worth_scoring([]) == []


def test_state_for_keeps_the_state_beside_its_window_store() -> None:
    windows = MemoryWindowStore(max_events=5, span_ms=1000)
    state = state_for(windows)
    assert isinstance(state, MemoryDetectorState) and state.windows is windows
    with pytest.raises(TypeError, match="no detector state"):
        state_for(object())  # type: ignore[arg-type]
