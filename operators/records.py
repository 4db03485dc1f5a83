"""Records passed between the job's operators (pickled by PyFlink between Python operators)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyflink.common import Row, Types

from anomaly.device import FrameInput
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


# The cardio job's frames between its parse step and its detector, Row(pid, ts_ms, fs, payload) (issue 24): what
# the detector needs of a frame and nothing else, in fields the Java side reads (connectors/java FrameBlocks puts
# a device's frames of one block into one record). fs > 0: payload = the samples, little-endian float64;
# fs == PASS_THROUGH_FS: payload = a pickled object for the detector (a prior notice) that passes the blocks.
DEVICE_FRAME = Types.ROW([Types.STRING(), Types.LONG(), Types.DOUBLE(), Types.PRIMITIVE_ARRAY(Types.BYTE())])
PASS_THROUGH_FS = 0.0
SAMPLE_DTYPE = np.dtype("<f8")


def device_frame_row(frame: Frame) -> Row:
    samples = np.ascontiguousarray(frame.samples, dtype=SAMPLE_DTYPE).tobytes()
    return Row(frame.pid, frame.ts_ms, float(frame.fs), samples)


def pass_through_row(pid: str, value: Any) -> Row:
    return Row(pid, 0, PASS_THROUGH_FS, pickle.dumps(value))


def block_frames(block: tuple[str, list[tuple[int, float, bytes]]]) -> list[FrameInput]:
    """A FrameBlocks record (the pickle of (pid, [(ts_ms, fs, samples), ...])) as the detector's frames."""
    pid, frames = block
    return [FrameInput(pid, ts_ms, fs, np.frombuffer(samples, dtype=SAMPLE_DTYPE)) for ts_ms, fs, samples in frames]


@dataclass(frozen=True)
class WindowOutput:
    """What one anonymization window publishes, plus its accounting."""

    group: str
    window_start_ms: int
    window_end_ms: int
    published: list[PublishedFrame]
    metrics: Any
