"""Chaos resume: repeated kill -9 mid-stream, resume from the latest checkpoint, compare with an
uninterrupted run. Default run: 1 kill at half of the output during the catch-up of a pre-produced
backlog (100 patients x 60 s) with a reader's check of InfluxDB before the resume. Slow (`scripts/test.sh
--slow`, kept out of the default run for CI's time budget; a single kill -9 of the live job is in
test_crash_resume.py, cluster mode in test_web_ui.py and test_scale_out.py, kills while a resumed
job replays also in test_exactly_once_chaos.py, slow): the same on a 150 patients x 90 s backlog with 2 and 3
kills (resumed jobs killed again while they replay), 5 kills of the embedded job while the producer
runs, 5 kills of the TaskManager of a standalone cluster, 20 kills."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from testkit.chaos import run_chaos
from tests.integration.support import visible_classes_below_k


def _check(report) -> None:  # type: ignore[no-untyped-def]
    print(report.summary())
    assert report.points_chaos == report.points_uninterrupted == report.points_model, "points lost or duplicated"
    assert report.fingerprints_compared > 0 and report.fingerprints_differing == 0
    assert report.dead_letters_distinct == report.dead_letters_uninterrupted
    assert report.dead_letters_not_exact_replays == 0
    # The cardio branch: the same anomaly event ids and model update ids, repeats only exact replays.
    assert report.branch is not None and report.branch.ok, report.branch
    assert report.ok


@pytest.mark.slow
def test_five_kills(local_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = run_chaos(local_stack, tmp_path, kills=5, seed=1)
    assert report.kills == 5 and report.resumes == 5
    _check(report)


@pytest.mark.slow
def test_five_taskmanager_kills_in_cluster_mode(local_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = run_chaos(local_stack, tmp_path, kills=5, seed=3, mode="cluster")
    assert report.kills == 5 and report.kind == "kill -9 of the TaskManager"
    _check(report)
    left = [p for p in Path("/proc").glob("[0-9]*/cmdline") if str(tmp_path).encode() in _read(p)]
    assert left == [], "processes of the chaos cluster left behind"


def _backlog_kills_during_catch_up(local_stack, tmp_path: Path, kills: int,  # type: ignore[no-untyped-def]
                                   patients: int = 150, duration_s: int = 90) -> None:
    """Everything is in the topic before the job starts; kills during the catch-up: at 1/(2 kills) of the output,
    then each as soon as the resumed job has completed its first checkpoint (while it replays). Before
    every resume, no reader sees a class below k. (A restore whose checkpoint has the source at the end
    of every partition: tests/integration/test_event_time.py.)"""
    checked: list[str] = []

    def reader_check(url: str, db: str) -> None:
        below = visible_classes_below_k(url, db, 5)
        assert below == [], below
        checked.append(db)

    report = run_chaos(local_stack, tmp_path, kills=kills, seed=4, patients=patients, duration_s=duration_s, sites=3,
                       backlog=True, after_kill=reader_check)
    assert report.kills == kills and len(checked) == kills
    # At least one kill must land during the catch-up. A resumed job sometimes catches up before the driver
    # sees its first checkpoint (1 of 5 runs on 2026-12-04: kills 2 and 3 after all points; #19 item 4).
    after_all_points = sum("after all points were written" in note for note in report.notes)
    assert after_all_points <= kills - 1, "a kill during the catch-up"
    _check(report)


def test_backlog_kills_during_catch_up(local_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """1 kill at half of a 100 patients x 60 s backlog (1.5 M samples): the default run's share of CI's time
    budget. A kill lands in the catch-up and the reader's check runs before the resume, as in the slow twins."""
    _backlog_kills_during_catch_up(local_stack, tmp_path, kills=1, patients=100, duration_s=60)


@pytest.mark.slow
def test_two_backlog_kills_during_catch_up(local_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The default run's test until issue 21's cut: 2 kills on the 150 x 90 s backlog (3.4 M samples), the second
    while the resumed job replays its restore."""
    _backlog_kills_during_catch_up(local_stack, tmp_path, kills=2)


@pytest.mark.slow
def test_three_backlog_kills_during_catch_up(local_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The default test with a third kill (two resumes killed while they replay): one more kill and resume (753 s vs
    671 s side by side in one invocation on a shared, overloaded machine; 209 s alone on a quiet one)."""
    _backlog_kills_during_catch_up(local_stack, tmp_path, kills=3)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


@pytest.mark.slow
def test_twenty_kills(local_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = run_chaos(local_stack, tmp_path, kills=20, seed=2, patients=20)
    assert report.kills == 20
    _check(report)


def _check_recovery(report) -> None:  # type: ignore[no-untyped-def]
    """Exact output first (a failure here fails the test); then the bound of issue 19 item 4, which this machine
    does not meet today (docs/benchmarks.md, "Checkpoint spacing during a catch-up"): an older restore is reported
    as an expected failure with the per-kill figures, so the test turns green by itself once a fix lands."""
    print(report.summary())
    assert report.kills == 5 and len(report.recoveries) == 5
    assert all(recovery.age_from_trigger_s is not None for recovery in report.recoveries), "restore not measured"
    _check(replace(report, recoveries=[]))
    older = [recovery.line() for recovery in report.recoveries if not recovery.within_bound]
    if older:
        pytest.xfail("issue 19 item 4 open, restores older than 3 checkpoint intervals: " + "; ".join(older))


@pytest.mark.slow
def test_backlog_kills_restore_a_recent_checkpoint(local_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 19 item 4: 5 kills -9 at random moments of a ~9 M-sample catch-up (150 patients x 170 s) at the
    default 5 s checkpoint interval; exact points, and every resume restores a checkpoint triggered at most
    3 intervals before its kill (printed per kill with kill -> first new point and kill -> caught up)."""
    _check_recovery(run_chaos(local_stack, tmp_path, kills=5, seed=7, patients=150, duration_s=170, sites=3,
                              backlog=True, checkpoint_interval_s=5.0, measure_recovery=True))


@pytest.mark.slow
def test_live_kills_restore_a_recent_checkpoint(local_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same bound for 5 kills of a live stream (the producer running), with recovery times."""
    _check_recovery(run_chaos(local_stack, tmp_path, kills=5, seed=8, checkpoint_interval_s=5.0,
                              measure_recovery=True))
