"""Chaos resume (issue: reliability): repeated kill -9 mid-stream, resume from the latest checkpoint,
compare with an uninterrupted run. Default run: 5 kills of the embedded job and 5 kills of the
TaskManager of a standalone cluster; slow variant: 20 kills."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.chaos_resume import run_chaos


def _check(report) -> None:  # type: ignore[no-untyped-def]
    print(report.summary())
    assert report.points_chaos == report.points_uninterrupted == report.points_model, "points lost or duplicated"
    assert report.fingerprints_compared > 0 and report.fingerprints_differing == 0
    assert report.dead_letters_distinct == report.dead_letters_uninterrupted
    assert report.dead_letters_not_exact_replays == 0
    assert report.ok


def test_five_kills(local_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = run_chaos(local_stack, tmp_path, kills=5, seed=1)
    assert report.kills == 5 and report.resumes == 5
    _check(report)


def test_five_taskmanager_kills_in_cluster_mode(local_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = run_chaos(local_stack, tmp_path, kills=5, seed=3, mode="cluster")
    assert report.kills == 5 and report.kind == "kill -9 of the TaskManager"
    _check(report)
    left = [p for p in Path("/proc").glob("[0-9]*/cmdline") if str(tmp_path).encode() in _read(p)]
    assert left == [], "processes of the chaos cluster left behind"


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
