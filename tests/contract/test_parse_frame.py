"""Field rules of contract.frames.parse_frame, one at a time around a valid frame."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from contract import frames
from contract.frames import Control, EcgFrame, Rejection, parse_frame
from devstack.bad_input_corpus import DEFAULT_TS_MS, valid_frame

TS = DEFAULT_TS_MS


def encode(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def parse_with(**changes: Any) -> frames.ParseResult:
    frame = valid_frame(TS)
    for name, value in changes.items():
        if value is _ABSENT:
            frame.pop(name, None)
        else:
            frame[name] = value
    return parse_frame(encode(frame))


_ABSENT = object()


def reason_of(result: frames.ParseResult) -> str | None:
    return result.reason if isinstance(result, Rejection) else None


def test_valid_frame_fields() -> None:
    result = parse_frame(encode(valid_frame(TS)), TS)
    assert isinstance(result, EcgFrame)
    assert result.device_id == "dev-0042"
    assert result.patient_id == "MRN-0001234"
    assert result.patient_name == "Jane Doe"
    assert result.ts_ms == TS
    assert result.fs == 250.0 and isinstance(result.fs, float)
    assert result.lead == "II"
    assert result.samples.dtype == np.float64
    np.testing.assert_array_equal(result.samples, [0.12, 0.15, -0.02, 0.4, 1.1, 0.3])
    assert result.hr_bpm == 72.0
    assert (result.age, result.sex, result.zip, result.group) == (54, "F", "10115", "ward-3")
    assert result.extras == {}


def test_lead_names_are_published_in_their_standard_spelling() -> None:
    assert [parse_with(lead=lead).lead for lead in ("avr", "AVL", "mlii", "v4r")] == ["aVR", "aVL", "MLII", "V4R"]


def test_optional_fields_absent_or_null_get_defaults() -> None:
    for absent in (_ABSENT, None):
        result = parse_with(patient_name=absent, lead=absent, hr_bpm=absent)
        assert isinstance(result, EcgFrame)
        assert result.patient_name is None
        assert result.lead == "II"
        assert result.hr_bpm is None


def test_extra_fields_go_to_extras_and_group_field_does_not() -> None:
    result = parse_with(rhythm="AFib", firmware={"v": 3})
    assert isinstance(result, EcgFrame)
    assert result.extras == {"rhythm": "AFib", "firmware": {"v": 3}}


def test_group_field_is_configurable() -> None:
    frame = valid_frame(TS)
    frame["unit"] = "icu-2"
    result = parse_frame(encode(frame), group_field="unit")
    assert isinstance(result, EcgFrame) and result.group == "icu-2"
    assert result.extras == {"site": "ward-3"}  # site is an ordinary extra now
    del frame["unit"]
    missing = parse_frame(encode(frame), group_field="unit")
    assert missing == Rejection("missing_field", "unit")
    by_zip = parse_frame(encode(frame), group_field="zip")
    assert isinstance(by_zip, EcgFrame) and by_zip.group == "10115"


@pytest.mark.parametrize("name", ["device_id", "patient_id", "ts", "fs", "samples", "age", "sex", "zip", "site"])
def test_required_field_missing(name: str) -> None:
    result = parse_with(**{name: _ABSENT})
    assert result == Rejection("missing_field", name)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("device_id", "d", None),
        ("device_id", "d" * 64, None),
        ("device_id", "", "out_of_range"),
        ("device_id", "d" * 65, "out_of_range"),
        ("device_id", 42, "wrong_type"),
        ("device_id", "dev\t1", "invalid_format"),
        ("patient_id", "", "out_of_range"),
        ("patient_id", ["MRN"], "wrong_type"),
        ("patient_id", "x" * 257, "out_of_range"),
        ("patient_name", "Zoë\u00a0O'Brien", None),  # free text: non-breaking space is fine
        ("patient_name", False, "wrong_type"),
        ("ts", frames.MIN_TS_MS, None),
        ("ts", frames.MAX_TS_MS - 1, None),
        ("ts", frames.MIN_TS_MS - 1, "out_of_range"),
        ("ts", frames.MAX_TS_MS, "out_of_range"),
        ("ts", -5, "out_of_range"),
        ("ts", 10**16, "out_of_range"),
        ("ts", True, "wrong_type"),
        ("ts", float(TS), "wrong_type"),
        ("ts", str(TS), "wrong_type"),
        ("fs", 1, None),
        ("fs", 2000, None),
        ("fs", 0.5, "out_of_range"),
        ("fs", 2000.5, "out_of_range"),
        ("fs", 360.5, None),
        ("fs", False, "wrong_type"),
        ("fs", None, "wrong_type"),
        ("lead", "V1", None),
        ("lead", "MLII", None),
        ("lead", "avr", None),
        ("lead", "MRN-0001234", "invalid_format"),  # published as a tag: only lead names pass
        ("lead", "Jane", "invalid_format"),
        ("lead", "", "out_of_range"),
        ("lead", "x" * 17, "out_of_range"),
        ("lead", 1, "wrong_type"),
        ("hr_bpm", 10, None),
        ("hr_bpm", 350.0, None),
        ("hr_bpm", 9.9, "out_of_range"),
        ("hr_bpm", 350.1, "out_of_range"),
        ("hr_bpm", "72", "wrong_type"),
        ("hr_bpm", True, "wrong_type"),
        ("age", 0, None),
        ("age", 120, None),
        ("age", -1, "out_of_range"),
        ("age", 121, "out_of_range"),
        ("age", 999, "out_of_range"),
        ("age", False, "wrong_type"),
        ("age", 54.0, "wrong_type"),
        ("sex", "M", None),
        ("sex", "U", None),
        ("sex", "X", "out_of_range"),
        ("sex", "", "out_of_range"),
        ("sex", None, "wrong_type"),
        ("zip", "0", None),
        ("zip", "0123456789", None),
        ("zip", "01234567890", "out_of_range"),
        ("zip", "", "out_of_range"),
        ("zip", "10 115", "invalid_format"),
        ("zip", "１０１１５", "invalid_format"),  # full-width digits are not ASCII
        ("zip", 10115, "wrong_type"),
        ("site", "w" * 64, None),
        ("site", "w" * 65, "out_of_range"),
        ("site", "", "out_of_range"),
        ("site", None, "wrong_type"),
    ],
)
def test_field_rule(name: str, value: Any, reason: str | None) -> None:
    result = parse_with(**{name: value})
    assert reason_of(result) == reason, result
    if reason is not None:
        assert isinstance(result, Rejection) and name in result.detail


@pytest.mark.parametrize(
    ("samples", "reason"),
    [
        ([0.0], None),
        ([1, -2, 3.5], None),
        ([0.1] * frames.MAX_SAMPLES, None),
        ([0.1] * (frames.MAX_SAMPLES + 1), "too_many_samples"),
        ([], "empty_samples"),
        ([0.1, "0.2"], "wrong_type"),
        ([0.1, None], "wrong_type"),
        ([0.1, False], "wrong_type"),
        ([[0.1]], "wrong_type"),
        ({"0": 0.1}, "wrong_type"),
        ("0.1", "wrong_type"),
        ([0.1, 1e300], "out_of_range"),
        ([10**400], "non_finite_sample"),
    ],
)
def test_samples_rule(samples: Any, reason: str | None) -> None:
    assert reason_of(parse_with(samples=samples)) == reason


def test_integer_samples_become_float64() -> None:
    result = parse_with(samples=[1, 2, 3])
    assert isinstance(result, EcgFrame) and result.samples.dtype == np.float64


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_sample_names_index(literal: str) -> None:
    text = encode(valid_frame(TS)).decode().replace("[0.12,", f"[0.12, {literal},", 1)
    result = parse_frame(text.encode())
    assert isinstance(result, Rejection) and result.reason == "non_finite_sample"
    assert "samples[1]" in result.detail


def test_nan_literal_outside_samples_is_invalid_json() -> None:
    text = encode(valid_frame(TS)).decode()[:-1] + ', "note": NaN}'
    assert reason_of(parse_frame(text.encode())) == "invalid_json"


def test_ts_mismatch_against_record_timestamp() -> None:
    value = encode(valid_frame(TS))
    assert isinstance(parse_frame(value, TS), EcgFrame)
    assert isinstance(parse_frame(value, TS + 60_000), EcgFrame)  # tolerance is inclusive
    assert reason_of(parse_frame(value, TS + 60_001)) == "ts_mismatch"
    assert reason_of(parse_frame(value, TS - 60_001)) == "ts_mismatch"
    assert isinstance(parse_frame(value, TS + 5_000, ts_tolerance_ms=5_000), EcgFrame)
    assert reason_of(parse_frame(value, TS + 5_001, ts_tolerance_ms=5_000)) == "ts_mismatch"


def test_control_end_of_stream() -> None:
    far = 4_102_444_799_999
    assert parse_frame(encode({"control": "end-of-stream", "ts": far})) == Control("end-of-stream", far)
    # The record timestamp of a control message is its own far-future ts: no mismatch check.
    assert parse_frame(encode({"control": "end-of-stream", "ts": far}), 0) == Control("end-of-stream", far)
    assert reason_of(parse_frame(encode({"control": "end-of-stream", "ts": "soon"}))) == "wrong_type"
    assert reason_of(parse_frame(encode({"control": "end-of-stream", "ts": -1}))) == "out_of_range"
    assert reason_of(parse_frame(encode({"control": "pause", "ts": far}))) == "out_of_range"


def test_encoding_and_structure_rules() -> None:
    assert reason_of(parse_frame(b"")) == "invalid_json"
    assert reason_of(parse_frame(b"\xff\xfe{}")) == "not_utf8"
    assert reason_of(parse_frame(b"[]")) == "invalid_json"
    assert reason_of(parse_frame(b'{"a": 1, "a": 1}')) == "duplicate_key"
    assert reason_of(parse_frame(b"{" * 100_000)) == "too_deep"
    assert reason_of(parse_frame(b" " * (frames.MAX_MESSAGE_BYTES + 1))) == "oversized"
    # Brackets inside strings are not nesting.
    frame = valid_frame(TS)
    frame["note"] = "[" * 1000
    assert isinstance(parse_frame(encode(frame)), EcgFrame)


def test_depth_limit_boundary() -> None:
    # The frame object itself is level 1; extras nested to exactly the limit are fine.
    def nested(levels: int) -> bytes:
        text = encode(valid_frame(TS)).decode()
        return (text[:-1] + ', "x": ' + "[" * levels + "]" * levels + "}").encode()

    assert isinstance(parse_frame(nested(frames.MAX_JSON_DEPTH - 1)), EcgFrame)
    assert reason_of(parse_frame(nested(frames.MAX_JSON_DEPTH))) == "too_deep"


def test_bytes_like_inputs_are_accepted() -> None:
    value = encode(valid_frame(TS))
    assert isinstance(parse_frame(bytearray(value)), EcgFrame)  # type: ignore[arg-type]
    assert isinstance(parse_frame(memoryview(value)), EcgFrame)  # type: ignore[arg-type]
    assert reason_of(parse_frame(None)) == "invalid_json"  # type: ignore[arg-type]  # Kafka tombstone


def test_reasons_are_known_codes() -> None:
    assert all(code == code.lower() and " " not in code for code in frames.REASONS)
