"""testkit.chaos's verdict without the stack: with exactly-once, one replay seen by a reader fails a run that
at-least-once would pass (its replays are exact, so they are allowed there)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from testkit.chaos import BranchComparison, ChaosReport, delivery_args


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
