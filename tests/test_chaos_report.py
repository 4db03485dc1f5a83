"""testkit.chaos's verdict without the stack: with exactly-once, one replay seen by a reader fails a run that
at-least-once would pass (its replays are exact, so they are allowed there)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from testkit.chaos import BranchComparison, ChaosReport, KillRecovery, delivery_args
from testkit.checkpoint_watch import CompletedCheckpoint, spacing


def _passing(delivery: str) -> ChaosReport:
    return ChaosReport(delivery=delivery, kills=3, resumes=3, points_chaos=10, points_uninterrupted=10,
                       points_model=10, fingerprints_compared=4, dead_letters_distinct=2,
                       dead_letters_uninterrupted=2,
                       branch=BranchComparison(anomalies_chaos=1, anomalies_uninterrupted=1, anomalies_model=1,
                                               updates_chaos=3, updates_uninterrupted=3, updates_model=3))


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_no_replays_pass(delivery: str) -> None:
    report = _passing(delivery)
    assert report.ok and report.replays == 0
    assert f"delivery                                {delivery}" in report.summary()


@pytest.mark.parametrize("replayed", [{"dead_letters_replayed": 1}, {"anomalies_replayed": 1},
                                      {"updates_replayed": 2}])
def test_exactly_once_fails_on_any_replay(replayed: dict[str, int]) -> None:
    for delivery, ok in (("at-least-once", True), ("exactly-once", False)):
        report = _passing(delivery)
        if "dead_letters_replayed" in replayed:
            report = replace(report, **replayed)
        else:
            assert report.branch is not None
            report = replace(report, branch=replace(report.branch, **replayed))
        assert report.replays == sum(replayed.values())
        assert report.ok is ok, delivery


def test_delivery_args() -> None:
    assert delivery_args("at-least-once", "x") == []
    assert delivery_args("exactly-once", "chaos-1") == ["--kafka-delivery", "exactly-once",
                                                        "--kafka-transactional-id-prefix", "chaos-1"]
    with pytest.raises(ValueError):
        delivery_args("exactly-twice", "x")


def _recovery(age_from_trigger_s: float | None) -> KillRecovery:
    return KillRecovery(restored="chk-7", age_from_trigger_s=age_from_trigger_s, age_from_completion_s=1.0,
                        first_new_point_s=20.0, caught_up_s=30.0, interval_s=5.0)


def test_a_restore_older_than_three_intervals_fails_the_run() -> None:
    report = _passing("at-least-once")
    assert replace(report, recoveries=[_recovery(15.0), _recovery(2.0)]).ok
    older = replace(report, recoveries=[_recovery(2.0), _recovery(15.1)])
    assert not older.ok and "vs 3 x interval = 15 s: OLDER" in older.summary()
    # A restored checkpoint the REST history never showed cannot be vouched for.
    assert not replace(report, recoveries=[_recovery(None)]).ok


def _checkpoint(checkpoint_id: int, trigger_s: float, completed_s: float) -> CompletedCheckpoint:
    return CompletedCheckpoint(job_id="j", checkpoint_id=checkpoint_id, trigger_ms=int(trigger_s * 1000),
                               completed_ms=int(completed_s * 1000), size_bytes=2_000_000, unaligned=False,
                               start_delay_ms=500, alignment_ms=0, slowest_vertex="v")


def test_spacing_counts_from_the_start_and_to_the_end() -> None:
    # Catch-up from 100 s to 150 s: completions at 103, 108 and 140 (triggered at 102, 107 and 113).
    checkpoints = [_checkpoint(1, 90, 95), _checkpoint(2, 102, 103), _checkpoint(3, 107, 108),
                   _checkpoint(4, 113, 140)]
    figures = spacing(checkpoints, 100_000, 150_000)
    assert figures.checkpoints == 3  # the one completed before the start is not counted
    assert figures.max_gap_s == 32.0  # 108 -> 140
    # A kill just before 140 restores checkpoint 3 (triggered at 107): 33 s of input replayed; one just before
    # the end restores checkpoint 4, which covers the input up to its trigger at 113 only: 37 s, the worst.
    assert figures.max_replay_s == 37.0
    assert figures.max_duration_s == 27.0 and figures.max_size_mb == 2.0
