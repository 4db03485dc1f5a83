"""Malformed and hostile `ecg-raw` messages, each with the rejection reason `parse_frame` must give.

Used by the contract tests, by the simulator's `--bad-fraction` injection and by integration tests
that count dead letters. `bad_inputs(ts_ms)` builds the corpus around a given event time so that
injected messages carry a plausible `ts` (only the mutated field is wrong).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from contract import frames

DEFAULT_TS_MS = 1_763_812_800_000  # 2025-11-22T12:00:00Z


@dataclass(frozen=True, slots=True)
class BadInput:
    name: str
    value: bytes
    expected_reason: str
    # Kafka record timestamp to parse with; None means "not given" (only ts_mismatch needs one).
    record_timestamp_ms: int | None = None


def valid_frame(ts_ms: int = DEFAULT_TS_MS) -> dict[str, Any]:
    """A valid frame as a dict; each corpus entry breaks exactly one thing in it."""
    return {
        "device_id": "dev-0042",
        "patient_id": "MRN-0001234",
        "patient_name": "Jane Doe",
        "ts": ts_ms,
        "fs": 250,
        "lead": "II",
        "samples": [0.12, 0.15, -0.02, 0.4, 1.1, 0.3],
        "hr_bpm": 72.0,
        "age": 54,
        "sex": "F",
        "zip": "10115",
        "site": "ward-3",
    }


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _with(ts_ms: int, **changes: Any) -> bytes:
    frame = valid_frame(ts_ms)
    frame.update(changes)
    return _encode(frame)


def _without(ts_ms: int, field_name: str) -> bytes:
    frame = valid_frame(ts_ms)
    del frame[field_name]
    return _encode(frame)


def _replace_raw(ts_ms: int, field_name: str, raw_json: str) -> bytes:
    """Put literal JSON text (e.g. NaN, which json.dumps would not emit as asked) into a field."""
    placeholder = "__RAW_PLACEHOLDER__"
    text = _with(ts_ms, **{field_name: placeholder}).decode("utf-8")
    return text.replace(f'"{placeholder}"', raw_json).encode("utf-8")


def bad_inputs(ts_ms: int = DEFAULT_TS_MS, *, include_oversized: bool = True) -> list[BadInput]:
    """The corpus. `include_oversized=False` skips the > 1 MiB entries (cheap to build, and what a
    default Kafka broker accepts)."""
    r = frames
    valid = _with(ts_ms)
    deep = "[" * 10_000 + "]" * 10_000
    entries = [
        # --- framing and encoding
        BadInput("empty_message", b"", r.REASON_INVALID_JSON),
        BadInput("whitespace_only", b"   \n", r.REASON_INVALID_JSON),
        BadInput("truncated_json", valid[: len(valid) // 2], r.REASON_INVALID_JSON),
        BadInput("truncated_last_byte", valid[:-1], r.REASON_INVALID_JSON),
        BadInput("plain_text", b"hello ecg", r.REASON_INVALID_JSON),
        BadInput("json_array_not_object", b"[" + valid + b"]", r.REASON_INVALID_JSON),
        BadInput("json_string_not_object", b'"dev-0042"', r.REASON_INVALID_JSON),
        BadInput("json_null", b"null", r.REASON_INVALID_JSON),
        BadInput("json_number", b"42", r.REASON_INVALID_JSON),
        BadInput("trailing_garbage", valid + b"}", r.REASON_INVALID_JSON),
        BadInput("two_objects", valid + valid, r.REASON_INVALID_JSON),
        BadInput("single_quotes", valid.replace(b'"', b"'"), r.REASON_INVALID_JSON),
        BadInput("utf8_bom", b"\xef\xbb\xbf" + valid, r.REASON_INVALID_JSON),
        BadInput("not_utf8_latin1", _with(ts_ms, patient_name="Jürgen").decode().encode("latin-1"), r.REASON_NOT_UTF8),
        BadInput("not_utf8_random_bytes", bytes(range(128, 256)), r.REASON_NOT_UTF8),
        BadInput("utf16_encoded", valid.decode().encode("utf-16"), r.REASON_NOT_UTF8),
        BadInput("deeply_nested_10000", f'{{"device_id":"dev-0042","x":{deep}}}'.encode(), r.REASON_TOO_DEEP),
        BadInput("deeply_nested_top_level", deep.encode(), r.REASON_TOO_DEEP),
        BadInput("nested_extras_40_levels", _replace_raw(ts_ms, "extra", "[" * 40 + "]" * 40), r.REASON_TOO_DEEP),
        BadInput("duplicate_key_device_id", valid[:-1] + b',"device_id":"dev-9999"}', r.REASON_DUPLICATE_KEY),
        BadInput("duplicate_key_nested", _replace_raw(ts_ms, "meta", '{"a":1,"a":2}'), r.REASON_DUPLICATE_KEY),
        BadInput("huge_integer_literal", _replace_raw(ts_ms, "ts", "9" * 5000), r.REASON_INVALID_JSON),
        BadInput("nan_outside_samples", _replace_raw(ts_ms, "extra", "NaN"), r.REASON_INVALID_JSON),
        # --- missing required fields
        *(
            BadInput(f"missing_{name}", _without(ts_ms, name), r.REASON_MISSING_FIELD)
            for name in ("device_id", "patient_id", "ts", "fs", "samples", "age", "sex", "zip", "site")
        ),
        # --- nulls: required -> wrong type (optional nulls are allowed, see the tests)
        BadInput("null_device_id", _with(ts_ms, device_id=None), r.REASON_WRONG_TYPE),
        BadInput("null_ts", _with(ts_ms, ts=None), r.REASON_WRONG_TYPE),
        BadInput("null_samples", _with(ts_ms, samples=None), r.REASON_WRONG_TYPE),
        BadInput("null_age", _with(ts_ms, age=None), r.REASON_WRONG_TYPE),
        # --- device_id / patient_id / names
        BadInput("device_id_empty", _with(ts_ms, device_id=""), r.REASON_OUT_OF_RANGE),
        BadInput("device_id_65_chars", _with(ts_ms, device_id="d" * 65), r.REASON_OUT_OF_RANGE),
        BadInput("device_id_number", _with(ts_ms, device_id=42), r.REASON_WRONG_TYPE),
        BadInput("device_id_newline", _with(ts_ms, device_id="dev\n42"), r.REASON_INVALID_FORMAT),
        BadInput("device_id_lone_surrogate", _replace_raw(ts_ms, "device_id", '"dev\\ud800"'), r.REASON_INVALID_FORMAT),
        BadInput("patient_id_empty", _with(ts_ms, patient_id=""), r.REASON_OUT_OF_RANGE),
        BadInput("patient_id_object", _with(ts_ms, patient_id={"mrn": "1"}), r.REASON_WRONG_TYPE),
        BadInput("patient_name_number", _with(ts_ms, patient_name=7), r.REASON_WRONG_TYPE),
        # --- ts
        BadInput("ts_negative", _with(ts_ms, ts=-1), r.REASON_OUT_OF_RANGE),
        BadInput("ts_zero", _with(ts_ms, ts=0), r.REASON_OUT_OF_RANGE),
        BadInput("ts_seconds_not_ms", _with(ts_ms, ts=ts_ms // 1000), r.REASON_OUT_OF_RANGE),
        BadInput("ts_1e12_before_2010", _with(ts_ms, ts=10**12), r.REASON_OUT_OF_RANGE),
        BadInput("ts_1e16_microseconds", _with(ts_ms, ts=10**16), r.REASON_OUT_OF_RANGE),
        BadInput("ts_year_2100", _with(ts_ms, ts=frames.MAX_TS_MS), r.REASON_OUT_OF_RANGE),
        BadInput("ts_string", _with(ts_ms, ts=str(ts_ms)), r.REASON_WRONG_TYPE),
        BadInput("ts_float", _with(ts_ms, ts=ts_ms + 0.5), r.REASON_WRONG_TYPE),
        BadInput("ts_bool", _with(ts_ms, ts=True), r.REASON_WRONG_TYPE),
        BadInput(
            "ts_mismatch_record_timestamp",
            _with(ts_ms, ts=ts_ms + 600_000),
            r.REASON_TS_MISMATCH,
            record_timestamp_ms=ts_ms,
        ),
        # --- fs
        BadInput("fs_zero", _with(ts_ms, fs=0), r.REASON_OUT_OF_RANGE),
        BadInput("fs_negative", _with(ts_ms, fs=-250), r.REASON_OUT_OF_RANGE),
        BadInput("fs_5000", _with(ts_ms, fs=5000), r.REASON_OUT_OF_RANGE),
        BadInput("fs_string", _with(ts_ms, fs="250"), r.REASON_WRONG_TYPE),
        BadInput("fs_bool", _with(ts_ms, fs=True), r.REASON_WRONG_TYPE),
        BadInput("fs_infinity", _replace_raw(ts_ms, "fs", "Infinity"), r.REASON_OUT_OF_RANGE),
        # --- lead
        BadInput("lead_number", _with(ts_ms, lead=2), r.REASON_WRONG_TYPE),
        BadInput("lead_too_long", _with(ts_ms, lead="L" * 17), r.REASON_OUT_OF_RANGE),
        BadInput("lead_patient_id", _with(ts_ms, lead="MRN-0001234"), r.REASON_INVALID_FORMAT),
        # --- samples
        BadInput("samples_empty", _with(ts_ms, samples=[]), r.REASON_EMPTY_SAMPLES),
        BadInput("samples_5000", _with(ts_ms, samples=[0.1] * 5000), r.REASON_TOO_MANY_SAMPLES),
        BadInput("samples_nan", _replace_raw(ts_ms, "samples", "[0.1,NaN,0.2]"), r.REASON_NON_FINITE_SAMPLE),
        BadInput("samples_infinity", _replace_raw(ts_ms, "samples", "[Infinity]"), r.REASON_NON_FINITE_SAMPLE),
        BadInput("samples_neg_infinity", _replace_raw(ts_ms, "samples", "[0.0,-Infinity]"), r.REASON_NON_FINITE_SAMPLE),
        BadInput("samples_overflow_1e999", _replace_raw(ts_ms, "samples", "[1e999]"), r.REASON_NON_FINITE_SAMPLE),
        BadInput("samples_huge_value", _with(ts_ms, samples=[0.1, 1e300]), r.REASON_OUT_OF_RANGE),
        BadInput("samples_contains_string", _with(ts_ms, samples=[0.1, "0.2"]), r.REASON_WRONG_TYPE),
        BadInput("samples_contains_null", _with(ts_ms, samples=[0.1, None]), r.REASON_WRONG_TYPE),
        BadInput("samples_contains_bool", _with(ts_ms, samples=[0.1, True]), r.REASON_WRONG_TYPE),
        BadInput("samples_nested_list", _with(ts_ms, samples=[[0.1, 0.2]]), r.REASON_WRONG_TYPE),
        BadInput("samples_string", _with(ts_ms, samples="0.1,0.2"), r.REASON_WRONG_TYPE),
        BadInput("samples_object", _with(ts_ms, samples={"0": 0.1}), r.REASON_WRONG_TYPE),
        # --- hr_bpm
        BadInput("hr_bpm_string", _with(ts_ms, hr_bpm="72"), r.REASON_WRONG_TYPE),
        BadInput("hr_bpm_zero", _with(ts_ms, hr_bpm=0), r.REASON_OUT_OF_RANGE),
        BadInput("hr_bpm_1000", _with(ts_ms, hr_bpm=1000), r.REASON_OUT_OF_RANGE),
        BadInput("hr_bpm_nan", _replace_raw(ts_ms, "hr_bpm", "NaN"), r.REASON_OUT_OF_RANGE),
        # --- quasi-identifiers
        BadInput("age_999", _with(ts_ms, age=999), r.REASON_OUT_OF_RANGE),
        BadInput("age_negative", _with(ts_ms, age=-1), r.REASON_OUT_OF_RANGE),
        BadInput("age_bool", _with(ts_ms, age=True), r.REASON_WRONG_TYPE),
        BadInput("age_float", _with(ts_ms, age=54.5), r.REASON_WRONG_TYPE),
        BadInput("age_string", _with(ts_ms, age="54"), r.REASON_WRONG_TYPE),
        BadInput("sex_unknown_value", _with(ts_ms, sex="X"), r.REASON_OUT_OF_RANGE),
        BadInput("sex_lowercase", _with(ts_ms, sex="f"), r.REASON_OUT_OF_RANGE),
        BadInput("sex_number", _with(ts_ms, sex=1), r.REASON_WRONG_TYPE),
        BadInput("zip_with_letters", _with(ts_ms, zip="10A15"), r.REASON_INVALID_FORMAT),
        BadInput("zip_unicode_digits", _with(ts_ms, zip="١٠١١٥"), r.REASON_INVALID_FORMAT),
        BadInput("zip_number", _with(ts_ms, zip=10115), r.REASON_WRONG_TYPE),
        BadInput("zip_empty", _with(ts_ms, zip=""), r.REASON_OUT_OF_RANGE),
        BadInput("zip_11_digits", _with(ts_ms, zip="12345678901"), r.REASON_OUT_OF_RANGE),
        BadInput("site_empty", _with(ts_ms, site=""), r.REASON_OUT_OF_RANGE),
        BadInput("site_number", _with(ts_ms, site=3), r.REASON_WRONG_TYPE),
        BadInput("site_65_chars", _with(ts_ms, site="w" * 65), r.REASON_OUT_OF_RANGE),
        # --- control messages
        BadInput("control_unknown_kind", _encode({"control": "shutdown", "ts": ts_ms}), r.REASON_OUT_OF_RANGE),
        BadInput("control_missing_ts", _encode({"control": "end-of-stream"}), r.REASON_MISSING_FIELD),
        BadInput("control_kind_number", _encode({"control": 1, "ts": ts_ms}), r.REASON_WRONG_TYPE),
    ]
    if include_oversized:
        entries += [
            BadInput("oversized_10mb", _with(ts_ms, padding="x" * 10_000_000), r.REASON_OVERSIZED),
            BadInput(
                "oversized_just_over_1mib",
                b" " * (frames.MAX_MESSAGE_BYTES + 1 - len(valid)) + valid,
                r.REASON_OVERSIZED,
            ),
        ]
    names = [entry.name for entry in entries]
    assert len(names) == len(set(names)), "corpus names must be unique"
    return entries


BAD_INPUTS: list[BadInput] = bad_inputs()


def injectable_bad_inputs(ts_ms: int = DEFAULT_TS_MS) -> list[BadInput]:
    """What the simulator mixes into a stream: entries a default Kafka broker accepts
    (message.max.bytes ≈ 1 MB) and that need no record timestamp other than their slot's."""
    return [entry for entry in bad_inputs(ts_ms, include_oversized=False) if entry.record_timestamp_ms is None]
