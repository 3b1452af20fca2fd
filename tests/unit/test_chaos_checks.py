"""The chaos soak's checks on recorded data made by hand: each fails when its rule is broken."""

from __future__ import annotations

from loadtest.chaos_checks import (
    Fault,
    Lifetime,
    Produced,
    Rebalance,
    alert_conflicts,
    attribute_duplicates,
    counters_vs_topics,
    dead_letter_check,
    fault_rebalances,
    log_end_at,
    rebalance_summary,
    recovery_times,
    rss_summary,
    summarise_recoveries,
)
from loadtest.chaos_record import Clock, dump_truth, load_truth, log_events, rebalances


def produced(n: int = 10) -> list[Produced]:
    """Events e0..e9 on partition 0, offsets 0..9, sent at t=i, acknowledged at t=i+0.1."""
    return [Produced(f"e{i}", 0, i, float(i), i + 0.1) for i in range(n)]


def fault(kind: str = "worker_sigkill", *, at: float = 4.0, end: float = 5.0,
          committed: int = 3) -> Fault:
    return Fault(kind, at, end, {0: committed}, {0: 5})


def test_log_end_at_counts_only_what_was_acknowledged_by_then():
    assert log_end_at(produced(), 4.5) == {0: 5}
    assert log_end_at(produced(), 0.0) == {}


def test_recovery_is_when_everything_sent_before_the_end_is_covered():
    f = fault(end=5.0)
    covers = {f"e{i}": i + 0.5 for i in range(10)}
    covers["e2"] = 8.0  # redelivered late: e0..e5 (sent by t=5) all covered only at t=8
    recovery_times(produced(), covers, [f], end_of_run=20.0)
    assert f.recovered_at == 8.0
    covers["e2"] = 2.5
    recovery_times(produced(), covers, [f], end_of_run=20.0)
    assert f.recovered_at == 5.5  # e5, sent at 5.0, covered at 5.5
    del covers["e1"]  # never covered: the end of the run
    recovery_times(produced(), covers, [f], end_of_run=20.0)
    assert f.recovered_at == 20.0
    assert summarise_recoveries([f]) == {"worker_sigkill": {"count": 1, "median_s": 15.0,
                                                            "max_s": 15.0}}


def test_duplicates_inside_the_in_flight_range_are_explained_outside_are_not():
    f = fault(committed=3)
    f.recovered_at = 6.5  # log end then: offset 6 acknowledged at 6.1 -> range [3, 7)
    counts = {f"e{i}": 1 for i in range(10)}
    counts.update(e3=2, e6=2)
    got = attribute_duplicates(counts, produced(), [f])
    assert got["per_fault_kind"] == {"worker_sigkill": 2} and not got["problems"]
    counts.update(e2=2, e7=3)  # committed before the fault; produced after the recovery
    got = attribute_duplicates(counts, produced(), [f])
    assert got["unexplained"] == 2 and got["extra_covers"] == 5 and got["problems"]


def test_an_event_produced_twice_may_be_covered_twice():
    msgs = [*produced(3), Produced("e1", 0, 3, 3.0, 3.1)]
    got = attribute_duplicates({"e0": 1, "e1": 2, "e2": 1}, msgs, [])
    assert got["events_scored_more_than_once"] == 0


def test_alert_copies_may_differ_only_in_the_delivery_time():
    a = {"alert_id": "a1", "kind": "bot_cadence", "evidence": {"event_ids": ["e1"]},
         "detected_at": "2026-12-05T07:00:00.000Z"}
    same = {**a, "detected_at": "2026-12-05T07:00:09.000Z"}
    assert alert_conflicts([a, same])["ids_delivered_more_than_once"] == 1
    assert not alert_conflicts([a, same])["problems"]
    other = {**a, "evidence": {"event_ids": ["e1", "e2"]}}
    assert alert_conflicts([a, other])["ids_with_differing_contents"] == 1


def test_dead_letters_must_be_exactly_the_invalid_messages():
    msgs = [*produced(3), Produced(None, 0, 3, 3.0, 3.1)]
    dl = {"topic": "clickstream", "partition": 0, "offset": 3}
    assert not dead_letter_check([dl, dl], msgs, "clickstream")["problems"]
    assert dead_letter_check([], msgs, "clickstream")["problems"]
    assert dead_letter_check([dl, {**dl, "offset": 1}], msgs, "clickstream")["problems"]


def test_rss_flat_within_the_margin_after_the_warm_up_and_short_lives_not_judged():
    lt = Lifetime("w1-0", 1, started=0.0,
                  rss=[(0, 50.0, 0), (10, 100.0, 500), (100, 110.0, 5000)])
    got = rss_summary([lt], warmup_events=500, margin=0.15, min_span_s=60)
    assert got["lifetimes"][0]["flat"] and not got["problems"]
    lt.rss.append((200, 120.0, 9000))
    assert rss_summary([lt], warmup_events=500, margin=0.15, min_span_s=60)["problems"]
    # judged from the first sample after the warm-up: 110 -> 120 MiB is within 15 %
    assert not rss_summary([lt], warmup_events=5000, margin=0.15, min_span_s=60)["problems"]
    short = Lifetime("w2-0", 2, started=0.0, rss=[(10, 100.0, 500), (30, 300.0, 900)])
    got = rss_summary([short], warmup_events=500, margin=0.15, min_span_s=60)
    assert got["lifetimes"][0]["judged"] is False and not got["problems"]


def test_counters_must_match_the_topic_up_to_the_unscraped_tail_of_killed_processes():
    fam = "intent_scores_total"
    done = Lifetime("w1-0", 1, 0.0, end_kind="final", last_scrape={fam: 100.0})
    killed = Lifetime("w2-0", 2, 0.0, end_kind="sigkill", last_scrape={fam: 40.0})
    ok = counters_vs_topics([done, killed], {fam: 145}, {fam: 5}, {})
    assert ok["families"][fam]["explained"] and not ok["problems"]
    assert counters_vs_topics([done, killed], {fam: 146}, {fam: 5}, {})["problems"]
    assert counters_vs_topics([done, killed], {fam: 139}, {fam: 5}, {})["problems"]  # fewer


def test_a_duplicate_after_the_faults_second_rebalance_is_in_its_range():
    f = fault("broker_pause", at=1.0, end=2.0, committed=1)
    f.recovered_at = 2.5  # log end then: [1, 3)
    later = fault("redis_sigkill", at=9.0, end=9.5, committed=8)
    later.recovered_at = 9.5
    counts = {f"e{i}": 1 for i in range(10)}
    counts["e5"] = 2  # scored, not committed, scored again after the second rebalance
    assert attribute_duplicates(counts, produced(), [f, later])["unexplained"] == 1
    first, second = Rebalance(5, 2.2, 2.9), Rebalance(6, 5.0, 6.5)  # log end at 6.5: 7
    got = attribute_duplicates(counts, produced(), [f, later], [first, second])
    assert got["per_fault"] == {"0": 1} and not got["problems"]
    assert rebalance_summary([f, later], [first, second])[0] == {
        "rebalances": 2, "generations": [5, 6], "rebalance_spans_s": [[0.2, 0.9], [3.0, 4.5]],
        "stable_after_end_s": 4.5}


def test_a_duplicate_after_the_next_fault_started_and_outside_its_range_is_unexplained():
    f = fault("broker_pause", at=1.0, end=2.0, committed=1)
    f.recovered_at = 2.5
    later = fault("redis_sigkill", at=5.0, end=5.5, committed=5)
    later.recovered_at = 5.5  # its range: [5, 6)
    # a rebalance that starts after the next fault started is that fault's, not the first's
    reb = Rebalance(6, 5.2, 7.5)
    assert fault_rebalances([f, later], [reb]) == [[], [reb]]
    counts = {f"e{i}": 1 for i in range(10)}
    counts["e4"] = 2  # after the first fault's range, before the second one's committed offset
    got = attribute_duplicates(counts, produced(), [f, later], [reb])
    assert got["unexplained"] == 1 and got["problems"]
    counts["e4"], counts["e7"] = 1, 2  # offset 7: acknowledged by 7.5, the rebalance's end
    assert attribute_duplicates(counts, produced(), [f, later], [reb])["per_fault"] == {"1": 1}


# lines of the full run's logs (the first worker, then the second one's replacement)
LOG = """\
[2026-12-05 07:22:21,522] [32563] [WARNING] Heartbeat failed for group chaos because it is rebalancing
[2026-12-05 07:22:21,523] [32563] [INFO] Revoking previously assigned partitions
[2026-12-05 07:22:27,738] [401] [INFO] Joined group 'chaos' (generation 5) with member_id faust-0.15.3-1701dacf-9e1d-49f2-b4f5-3351f5a506f2
[2026-12-05 07:22:28,028] [32563] [INFO] Joined group 'chaos' (generation 5) with member_id faust-0.15.3-c2325795-9283-4404-b447-9000d45cf646
[2026-12-05 07:22:28,030] [32563] [INFO] Successfully synced group chaos with generation 5
[2026-12-05 07:22:28,747] [401] [INFO] Successfully synced group chaos with generation 5
[2026-12-05 07:22:47,775] [401] [ERROR] OffsetCommit failed for group chaos due to group error ([Error 25] UnknownMemberIdError: chaos), will rejoin
[2026-12-05 07:22:52,907] [401] [INFO] Joined group 'chaos' (generation 6) with member_id faust-0.15.3-5b13c956-a012-42ef-a825-81fab71fc7a3
[2026-12-05 07:22:54,927] [401] [INFO] Successfully synced group chaos with generation 6
[2026-12-05 07:22:54,930] [401] [INFO] Successfully synced group other with generation 9
2026-12-05 07:18:00,042 INFO worker.runtime: model warmed up in 0.34s
"""  # noqa: E501 - log lines as written


def test_rebalances_are_read_from_the_group_lines_of_all_members():
    evs = log_events(LOG.splitlines(), "chaos")
    assert [(what, gen) for _, what, gen in evs] == [
        ("start", None), ("start", None), ("joined", 5), ("joined", 5), ("synced", 5),
        ("synced", 5), ("start", None), ("joined", 6), ("synced", 6)]
    wall0 = evs[0][0]  # 07:22:21.522 local time
    clock = Clock([(100.0, wall0)])  # monotonic 100 at the first line
    got = rebalances(evs, clock)
    assert [r.generation for r in got] == [5, 6]
    assert round(got[0].start, 3) == 100.0 and round(got[0].end, 3) == 107.225  # last sync
    assert round(got[1].start, 3) == 126.253 and round(got[1].end, 3) == 133.405


def test_the_clock_stands_while_the_wall_clock_jumps():
    clock = Clock([(10.0, 1000.0), (20.0, 1010.0), (21.0, 1025.0)])  # 14 s gained at ~20
    assert clock.to_mono(1005.0) == 15.0
    assert clock.to_mono(1018.0) == 21.0  # inside the jump: not past the next anchor
    assert clock.to_mono(1030.0) == 26.0
    assert clock.to_mono(995.0) == 5.0


def test_truth_reads_back_as_written(tmp_path):
    f = fault()
    f.recovered_at = 6.0
    lt = Lifetime("w1-0", 1, 0.0, rss=[(1.0, 100.0, 10.0)], last_scrape={"x": 1.0})
    path = tmp_path / "truth.json"
    dump_truth(path, t0=0.0, t0_wall_ms=1_000_000, clock=[(1.0, 1_001_000), (2.0, 1_016_000)],
               produced=produced(3), faults=[f], lifetimes=[lt], first_cover={"e0": 0.5},
               scores=[{"scored_at": "2026-12-05T07:00:00.000Z", "event_ids": ["e0"]}])
    got = load_truth(path)
    assert got.produced == produced(3) and got.faults == [f] and got.lifetimes == [lt]
    assert got.scores == [("2026-12-05T07:00:00.000Z", ["e0"])]
    assert got.wall_clock().to_mono(1_017.0) == 3.0  # after the recorded jump


def test_the_clock_from_score_records_follows_a_jump_and_skips_a_backlog():
    from datetime import UTC, datetime

    def stamp(wall: float) -> str:
        return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")

    scores, cover = [], {}
    for sec in range(10):  # monotonic 100..109; the wall clock 1000 ahead, 14 s more from 105
        for k in range(25):
            eid, mono = f"e{sec}-{k}", 100 + sec + k / 25
            cover[eid] = mono
            lag = 0.05 if sec != 3 else 5.0  # a backlog stamped 5 s before it was seen
            scores.append((stamp(mono + 1000 + (14 if sec >= 5 else 0) - lag), [eid]))
    # scored again a minute later (after a rebalance): left out
    scores += [(stamp(104.5 + 1060), [f"e4-{k}"]) for k in range(5)]
    clock = Clock.from_scores(scores, cover, t0=100.0, t0_wall_ms=1_100_000)
    assert abs(clock.to_mono(1102.0) - 102.0) < 0.2
    assert abs(clock.to_mono(1099.5) - 99.5) < 0.2  # no anchor from the backlog
    assert abs(clock.to_mono(1122.0) - 108.0) < 0.2  # after the jump
    assert 104.0 < clock.to_mono(1110.0) <= 106.0  # inside it
