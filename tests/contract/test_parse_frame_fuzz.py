"""Property tests: parse_frame never raises and never falls into its internal-error safety net."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.frames import MAX_TS_MS, MIN_TS_MS, Control, EcgFrame, Rejection, parse_frame
from devstack.bad_input_corpus import DEFAULT_TS_MS, valid_frame

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
FIELDS = [*valid_frame(), "control", "extra"]


def check_result(result: Any) -> None:
    assert isinstance(result, EcgFrame | Control | Rejection)
    if isinstance(result, Rejection):
        assert result.reason != "internal_error", result
    if isinstance(result, EcgFrame):
        assert MIN_TS_MS <= result.ts_ms < MAX_TS_MS
        assert 1 <= result.samples.size <= 4096 and np.isfinite(result.samples).all()
        assert 0 <= result.age <= 120 and result.sex in {"F", "M", "U"} and result.zip.isdigit()
        assert 1 <= result.fs <= 2000 and math.isfinite(result.fs)


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(value: bytes) -> None:
    check_result(parse_frame(value))


@FUZZ
@given(st.text(alphabet=st.sampled_from('{}[]",:0123456789.eE-+ truefalsnNaIiy\\u'), max_size=300))
def test_json_like_text_never_raises(text: str) -> None:
    check_result(parse_frame(text.encode("utf-8")))


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6), st.lists(st.sampled_from(FIELDS), max_size=3))
def test_mutated_frames_never_raise(changes: dict[str, Any], removed: list[str]) -> None:
    frame = valid_frame()
    frame.update(changes)
    for name in removed:
        frame.pop(name, None)
    value = json.dumps(frame).encode()  # json.dumps writes NaN/Infinity literals for non-finite floats
    check_result(parse_frame(value, DEFAULT_TS_MS))


@FUZZ
@given(
    samples=st.lists(st.floats(min_value=-50, max_value=50), min_size=1, max_size=500),
    ts=st.integers(min_value=MIN_TS_MS, max_value=MAX_TS_MS - 1),
    age=st.integers(min_value=0, max_value=120),
    zip_code=st.text(alphabet="0123456789", min_size=1, max_size=10),
    fs=st.floats(min_value=1, max_value=2000),
)
def test_valid_frames_round_trip(samples: list[float], ts: int, age: int, zip_code: str, fs: float) -> None:
    frame = valid_frame(ts)
    frame.update(samples=samples, age=age, zip=zip_code, fs=fs)
    result = parse_frame(json.dumps(frame).encode(), ts)
    assert isinstance(result, EcgFrame), result
    assert result.samples.tolist() == samples
    assert (result.ts_ms, result.age, result.zip, result.fs) == (ts, age, zip_code, fs)


@FUZZ
@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=50))
def test_bytes_spliced_into_valid_frame_never_raise(garbage: bytes, position: int) -> None:
    value = json.dumps(valid_frame()).encode()
    cut = min(position * 7, len(value))
    check_result(parse_frame(value[:cut] + garbage + value[cut:]))
