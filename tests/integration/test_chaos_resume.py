"""Chaos resume (issue: reliability): repeated kill -9 mid-stream, resume from the latest checkpoint,
compare with an uninterrupted run. 5 kills in the default run, 20 in the slow variant."""

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


@pytest.mark.slow
def test_twenty_kills(local_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = run_chaos(local_stack, tmp_path, kills=20, seed=2, patients=20)
    assert report.kills == 20
    _check(report)
