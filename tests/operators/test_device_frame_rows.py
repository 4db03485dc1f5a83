"""operators.records: the cardio job's frame rows carry a frame's samples bit for bit from the parse step to the
detector, as FrameBlocks passes them on (the payload bytes unchanged, inside its block pickle), and a prior notice
passes the blocks as a pickle (issue 24)."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from federated.priors import PriorNotice
from operators.records import PASS_THROUGH_FS, block_frames, device_frame_row, pass_through_row
from privacy.model import Frame


def _frame() -> Frame:
    samples = np.sin(np.linspace(0.0, 20.0, 250)) * 1.3 + np.float64(1e-9)
    return Frame("pseudonym-0001", 1_763_812_800_000, 250.0, "MLII", samples, None,
                 {"age": 61, "sex": "F", "ward": "icu-2"})


def _as_block(rows: list[Any]) -> tuple[str, list[tuple[int, float, bytes]]]:
    """What FrameBlocks' pickle decodes to: (pid, [(ts_ms, fs, samples), ...])."""
    return rows[0][0], [(row[1], row[2], row[3]) for row in rows]


def test_samples_round_trip_bit_for_bit() -> None:
    frame = _frame()
    row = device_frame_row(frame)
    assert (row[0], row[1], row[2]) == (frame.pid, frame.ts_ms, frame.fs)
    assert len(row[3]) == 8 * frame.samples.size  # what FrameBlocks counts the samples by
    (received,) = block_frames(_as_block([row]))
    assert (received.pid, received.ts_ms, received.fs) == (frame.pid, frame.ts_ms, frame.fs)
    assert received.samples.dtype == np.float64
    assert received.samples.tobytes() == frame.samples.tobytes()


def test_non_float64_samples_are_converted_not_reinterpreted() -> None:
    frame = _frame()
    as_float32 = Frame(frame.pid, frame.ts_ms, frame.fs, frame.lead, frame.samples.astype(np.float32), None, frame.qi)
    (received,) = block_frames(_as_block([device_frame_row(as_float32)]))
    assert np.array_equal(received.samples, frame.samples.astype(np.float32))


def test_a_block_keeps_its_frames_in_order() -> None:
    frame = _frame()
    later = Frame(frame.pid, frame.ts_ms + 1000, frame.fs, frame.lead, -frame.samples, None, frame.qi)
    received = block_frames(_as_block([device_frame_row(frame), device_frame_row(later)]))
    assert [f.ts_ms for f in received] == [frame.ts_ms, later.ts_ms]
    assert np.array_equal(received[1].samples, -frame.samples)


def test_a_notice_passes_as_its_pickle() -> None:
    notice = PriorNotice("pseudonym-0001", 7, '{"round": 7}')
    row = pass_through_row(notice.pid, notice)
    assert row[0] == notice.pid and row[2] == PASS_THROUGH_FS
    assert pickle.loads(row[3]) == notice
