"""operators.records.DeviceFrame: the cardio branch's slim record carries a frame's samples bit for bit and
pickles smaller than the KeyedFrame it replaces between the parse step and the detector (issue 24)."""

from __future__ import annotations

import cloudpickle
import numpy as np

from operators.records import DeviceFrame, KeyedFrame, SourcePosition
from privacy.model import Frame


def _frame() -> Frame:
    samples = np.sin(np.linspace(0.0, 20.0, 250)) * 1.3 + np.float64(1e-9)
    return Frame("pseudonym-0001", 1_763_812_800_000, 250.0, "MLII", samples, None,
                 {"age": 61, "sex": "F", "ward": "icu-2"})


def test_samples_round_trip_bit_for_bit_through_pickling() -> None:
    frame = _frame()
    received = cloudpickle.loads(cloudpickle.dumps(DeviceFrame.of(frame)))
    assert (received.pid, received.ts_ms, received.fs) == (frame.pid, frame.ts_ms, frame.fs)
    array = received.sample_array()
    assert array.dtype == np.float64
    assert array.tobytes() == frame.samples.tobytes()


def test_non_float64_samples_are_converted_not_reinterpreted() -> None:
    frame = _frame()
    as_float32 = Frame(frame.pid, frame.ts_ms, frame.fs, frame.lead, frame.samples.astype(np.float32), None, frame.qi)
    assert np.array_equal(DeviceFrame.of(as_float32).sample_array(), frame.samples.astype(np.float32))


def test_slimmer_than_the_keyed_frame() -> None:
    frame = _frame()
    keyed = KeyedFrame("site-1", frame, SourcePosition("ecg-raw", 3, 12_345))
    assert len(cloudpickle.dumps(DeviceFrame.of(frame))) < len(cloudpickle.dumps(keyed))
