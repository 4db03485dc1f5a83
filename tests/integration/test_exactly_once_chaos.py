"""KAFKA_DELIVERY=exactly-once under chaos (issue 20, item 3): three kill -9 of the job, each resumed from
its latest checkpoint, during the catch-up of a pre-produced backlog and during a live stream; then the
same input uninterrupted (also exactly-once). A read_committed reader must see every dead letter, anomaly
id and model-update id exactly once (zero replays), the same sets and bytes as the uninterrupted run and
the reference model, and InfluxDB exactly the model's points (testkit/chaos.py, `delivery="exactly-once"`).

Where the kills land, per run (printed per kill: time since the last completed checkpoint and the records
in open transactions of the three output topics at the kill):
- one within ~50 ms of a completed checkpoint (`after-checkpoint`: the checkpoint's transactions may not be
  committed yet; the resumed job commits them from the checkpoint),
- one while an output topic holds records of an open transaction (`open-transaction`: they must stay
  invisible, the resumed job aborts them and writes them again),
- one at the default moment (live: 0-4 s after a new checkpoint, at random; backlog: as soon as the
  resumed job has completed its first checkpoint, mid-replay).

Slow (minutes each; `scripts/test.sh --slow`). A single kill with dead letters only: test_exactly_once.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testkit.chaos import ChaosReport, run_chaos
from tests.integration.support import visible_classes_below_k

TIMINGS = ("open-transaction", "after-checkpoint", "default")


def _check_exactly_once(report: ChaosReport) -> None:
    print(report.summary())
    assert report.delivery == "exactly-once"
    assert report.kills == 3 and report.resumes == 3
    assert report.points_chaos == report.points_uninterrupted == report.points_model, "points lost or duplicated"
    assert report.fingerprints_compared > 0 and report.fingerprints_differing == 0
    assert report.dead_letters_distinct == report.dead_letters_uninterrupted > 0
    assert report.dead_letters_replayed == 0, "a read_committed reader saw a dead letter twice"
    assert report.branch is not None and report.branch.ok, report.branch
    assert report.branch.anomalies_replayed == 0 and report.branch.updates_replayed == 0, report.branch
    assert report.replays == 0 and report.ok
    # The kill meant to come while a transaction held records did (else run_chaos leaves a note).
    assert not [note for note in report.notes if "no open transaction" in note], report.notes
    opened = report.kill_timings[TIMINGS.index("open-transaction")]
    assert opened.open_records is not None and sum(opened.open_records.values()) > 0, opened
    after = report.kill_timings[TIMINGS.index("after-checkpoint")]
    assert after.checkpoint_age_s < 1.0, after


@pytest.mark.slow
def test_exactly_once_backlog_kills(local_stack: Any, tmp_path: Path) -> None:
    """As test_chaos_resume.py::test_three_backlog_kills_during_catch_up (150 patients x 90 s in 3 sites, 3 kills
    during the catch-up, a reader's k check after each), with Kafka transactions."""
    checked: list[str] = []

    def reader_check(url: str, db: str) -> None:
        below = visible_classes_below_k(url, db, 5)
        assert below == [], below
        checked.append(db)

    report = run_chaos(local_stack, tmp_path, kills=3, seed=4, patients=150, duration_s=90, sites=3, backlog=True,
                       after_kill=reader_check, delivery="exactly-once", kill_timing=TIMINGS)
    assert len(checked) == 3
    _check_exactly_once(report)


@pytest.mark.slow
def test_exactly_once_live_kills(local_stack: Any, tmp_path: Path) -> None:
    """12 patients x 60 s produced while the job runs, 3 kills, with Kafka transactions."""
    report = run_chaos(local_stack, tmp_path, kills=3, seed=5, patients=12, delivery="exactly-once",
                       kill_timing=TIMINGS)
    # The two timed kills come while the producer still streams (the third may come after it finished).
    late = [note for note in report.notes if "after the producer finished" in note and "kill 3" not in note]
    assert not late, report.notes
    _check_exactly_once(report)
