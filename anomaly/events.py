"""Messages of the topic `ecg-anomalies` (docs/contract.md).

``{"event_id", "pid", "ts", "hr_bpm", "z_score", "kind", "window_start", "window_end",
"model_version", "prior_round"}``. ``event_id`` is a digest of pid, kind and window bounds, so a
replay after a restore carries the same id. Only the pseudonym ``pid`` appears: no raw identifier,
no quasi-identifier.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

TACHYCARDIA = "tachycardia"
BRADYCARDIA = "bradycardia"
ASYSTOLE = "asystole"
NOISE = "noise"
ZSCORE_30S = "hr_zscore_30s"
ZSCORE_5MIN = "hr_zscore_5min"
KINDS = (TACHYCARDIA, BRADYCARDIA, ASYSTOLE, NOISE, ZSCORE_30S, ZSCORE_5MIN)


def event_id(pid: str, kind: str, window_start_ms: int, window_end_ms: int) -> str:
    return hashlib.sha256(f"{pid}|{kind}|{window_start_ms}|{window_end_ms}".encode()).hexdigest()[:32]


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


@dataclass(frozen=True)
class AnomalyEvent:
    pid: str
    kind: str
    window_start_ms: int
    window_end_ms: int
    hr_bpm: float | None
    z_score: float | None
    model_version: str  # "cold", "local-w<N>" or "global-<round>+w<N>": the baseline that scored it
    prior_round: int | None

    @property
    def event_id(self) -> str:
        return event_id(self.pid, self.kind, self.window_start_ms, self.window_end_ms)

    @property
    def ts_ms(self) -> int:
        """Event time at which the anomaly is known: the end of its window."""
        return self.window_end_ms

    def to_json(self) -> str:
        return json.dumps({
            "event_id": self.event_id, "pid": self.pid, "ts": self.ts_ms, "kind": self.kind,
            "window_start": self.window_start_ms, "window_end": self.window_end_ms,
            "hr_bpm": _rounded(self.hr_bpm, 2), "z_score": _rounded(self.z_score, 3),
            "model_version": self.model_version, "prior_round": self.prior_round,
        }, sort_keys=True, allow_nan=False)
