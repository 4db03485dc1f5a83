"""Round arithmetic: crossing rounds, close times, prior round of a joining device."""

from __future__ import annotations

import pytest

from federated.rounds import RoundClock

CLOCK = RoundClock(update_ms=60_000, grace_ms=5_000)


def test_close_and_prior_round() -> None:
    assert CLOCK.round_of(119_999) == 1 and CLOCK.close_ms(2) == 125_000
    # Joining at 125 s: round 2 closed at exactly 125 s; at 124.999 s only round 1 had.
    assert CLOCK.prior_round(125_000) == 2 and CLOCK.prior_round(124_999) == 1
    assert CLOCK.close_ms(CLOCK.prior_round(200_000)) <= 200_000 < CLOCK.close_ms(CLOCK.prior_round(200_000) + 1)


def test_crossing_round() -> None:
    assert CLOCK.crossing_round(None, 120_000) is None  # first frame: no update yet
    assert CLOCK.crossing_round(119_000, 120_000) == 2
    assert CLOCK.crossing_round(120_000, 121_000) is None  # same round
    assert CLOCK.crossing_round(100_000, 124_999) == 2  # within the grace
    assert CLOCK.crossing_round(100_000, 125_000) is None  # back from a gap too late: next boundary
    assert CLOCK.crossing_round(10_000, 181_000) == 3  # skipped rounds 1, 2: updates round 3


def test_invalid() -> None:
    with pytest.raises(ValueError):
        RoundClock(60_000, 60_000)
    with pytest.raises(ValueError):
        RoundClock(0, 1)
