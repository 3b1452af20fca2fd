"""The chaos soak at full size (about 15 minutes): ``python -m pytest -m slow
tests/e2e/test_chaos_soak.py -s``. It runs ``loadtest/chaos.py`` (its own broker, Redis with
AOF and two workers) and asserts each of its checks; docs/chaos.md describes them."""

from __future__ import annotations

import json

import pytest

from loadtest import chaos

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # the run takes ~11 minutes


def test_chaos_soak_loses_nothing_and_duplicates_only_what_was_in_flight(tmp_path):
    out = tmp_path / "chaos.json"
    rc = chaos.main(["--events", "200000", "--workdir", str(tmp_path / "run"),
                     "--json", str(out)])
    report = json.loads(out.read_text())
    checks = report["checks"]
    print(json.dumps({k: v for k, v in report.items() if k != "checks"}, indent=1))
    assert report["events"] >= 200_000
    kinds = {f["kind"] for f in report["faults"]}
    assert kinds == set(chaos.KINDS), kinds
    assert all(n["count"] >= 2 for n in report["recovery_per_kind"].values()), \
        report["recovery_per_kind"]
    assert all(f["mid_stream"] for f in report["faults"]), "a fault landed after the feed"
    assert checks["coverage"]["covered"] == checks["coverage"]["valid_events"]
    assert checks["duplicates"]["unexplained"] == 0, checks["duplicates"]
    assert checks["windows"]["windows_with_a_duplicate"] == 0
    assert checks["alerts"]["ids_with_differing_contents"] == 0, checks["alerts"]
    assert not checks["dead_letters"]["problems"], checks["dead_letters"]
    assert not checks["rss"]["problems"], checks["rss"]
    assert all(f["explained"] for f in checks["counters"]["families"].values()), \
        checks["counters"]
    assert not report["problems"], report["problems"]
    assert rc == 0
    # checked again from what the run left in its workdir: the same duplicates and rebalances
    again = tmp_path / "again.json"
    assert chaos.main(["--recheck", str(tmp_path / "run"), "--json", str(again)]) == 0
    rechecked = json.loads(again.read_text())
    dups = {k: v for k, v in rechecked["checks"]["duplicates"].items()
            if k != "without_rebalances"}
    assert dups == checks["duplicates"]
    assert [f["generations"] for f in rechecked["faults"]] == \
        [f["generations"] for f in report["faults"]]
