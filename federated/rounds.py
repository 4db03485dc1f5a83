"""Event-time round arithmetic shared by the devices, the aggregator and the reference model.

Round ``r`` covers event time ``[r*U, (r+1)*U)`` (U = MODEL_UPDATE_SECONDS; rounds are counted from
the epoch, so every replay and every job agrees on them). A device sends its local update for round
``r`` at its first frame of round ``r`` (crossing the boundary ``r*U``), if that frame is earlier
than ``r*U + A`` (A = grace); a device back from a gap waits for its next boundary. So every local
update of round ``r`` has an event time in ``[r*U, r*U + A)`` and the aggregator can close round
``r`` once event time reaches ``close_ms(r) = r*U + A``.

A device that joins at event time ``t`` takes the newest global round closed by then:
``prior_round(t) = max{r : close_ms(r) <= t}``. That choice depends on ``t`` only, never on when the
global update happened to arrive, which keeps replays identical (docs/anomalies.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RoundClock:
    update_ms: int
    grace_ms: int

    def __post_init__(self) -> None:
        if self.update_ms < 1:
            raise ValueError("update_ms must be >= 1")
        if not 0 < self.grace_ms < self.update_ms:
            raise ValueError("grace_ms must be in 1..update_ms-1")

    def round_of(self, ts_ms: int) -> int:
        return ts_ms // self.update_ms

    def start_ms(self, round_number: int) -> int:
        return round_number * self.update_ms

    def close_ms(self, round_number: int) -> int:
        """Event time at which the aggregator closes (and publishes) a round."""
        return round_number * self.update_ms + self.grace_ms

    def crossing_round(self, previous_ts_ms: int | None, ts_ms: int) -> int | None:
        """The round a device's local update at a frame of ``ts_ms`` belongs to, or None.

        None: no boundary between the previous frame and this one, no previous frame (a device
        sends its first update at its first boundary), or the frame is past the round's grace.
        """
        if previous_ts_ms is None:
            return None
        current = self.round_of(ts_ms)
        if current <= self.round_of(previous_ts_ms):
            return None
        if ts_ms >= self.close_ms(current):
            return None
        return current

    def prior_round(self, join_ts_ms: int) -> int:
        """The newest round closed at event time ``join_ts_ms`` (the prior of a device joining then)."""
        return (join_ts_ms - self.grace_ms) // self.update_ms
