"""Records passed between the job's operators (pickled by PyFlink between Python operators)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from privacy.model import Frame, PublishedFrame


@dataclass(frozen=True)
class SourcePosition:
    """Where a record came from; lets late records be re-read from the input topic."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class KeyedFrame:
    """A valid, pseudonymized frame with its window key (the configured group field, e.g. site)."""

    group: str
    frame: Frame
    position: SourcePosition


class DeviceFrame(NamedTuple):
    """What the cardio branch's detector needs of a frame, and nothing else: the samples as the raw bytes of
    their float64 array, the cheapest thing for PyFlink to pickle between the parse step and the detector
    (a `KeyedFrame` carries the QIs, the lead, the source position and an ndarray to pickle; issue 24)."""

    pid: str
    ts_ms: int
    fs: float
    samples: bytes  # float64, native byte order: np.ndarray.tobytes()

    @classmethod
    def of(cls, frame: Frame) -> DeviceFrame:
        return cls(frame.pid, frame.ts_ms, frame.fs, np.ascontiguousarray(frame.samples, dtype=np.float64).tobytes())

    def sample_array(self) -> np.ndarray:
        return np.frombuffer(self.samples, dtype=np.float64)


@dataclass(frozen=True)
class WindowOutput:
    """What one anonymization window publishes, plus its accounting."""

    group: str
    window_start_ms: int
    window_end_ms: int
    published: list[PublishedFrame]
    metrics: Any
