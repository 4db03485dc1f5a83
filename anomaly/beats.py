"""Where beats come from: the streaming beat detector of the `cardio` package, behind one small
interface so the anomaly core does not depend on its internals.

A beat source turns the frames of one device, in order, into confirmed beat times (event time, ms)
and tells up to which time its beats are final (a beat near the end of a frame is confirmed only
with the next frame, so windows are scored once the detector has confirmed their end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Beats:
    times_ms: list[int]  # newly confirmed beats, ascending
    confirmed_until_ms: int  # no beat before this time will be reported later


class BeatSource(Protocol):
    def start(self, fs: float) -> Any:
        """A new per-device detector state (picklable: it lives in Flink keyed state)."""

    def feed(self, state: Any, ts_ms: int, fs: float, samples: np.ndarray) -> tuple[Any, Beats]:
        """Process one frame; returns the new state and the beats confirmed meanwhile."""


class CardioBeats:
    """`cardio.BeatDetector`: streaming R-peak detection across frame boundaries, with a bounded
    confirmation latency (``max_latency_s``): after a frame ending at ``end``, no beat earlier than
    ``end - max_latency`` is still to come."""

    def start(self, fs: float) -> Any:
        return None  # BeatDetector.process starts a segment from None

    def feed(self, state: Any, ts_ms: int, fs: float, samples: np.ndarray) -> tuple[Any, Beats]:
        from cardio.detector import BeatDetector

        detector = BeatDetector()
        state, beats = detector.process(state, ts_ms, fs, samples)
        end_ms = ts_ms + 1000.0 * samples.shape[0] / fs
        confirmed = math.floor(end_ms - 1000.0 * detector.max_latency_s(fs))
        return state, Beats([round(beat.time_ms) for beat in beats], confirmed)
