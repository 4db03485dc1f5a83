"""Validation of `ecg-raw` messages against the stream contract (docs/contract.md).

Pure Python + numpy: no pyflink or kafka import, so operators, tests and benchmarks share it.
`parse_frame` runs once per Kafka message and never raises: every problem becomes a `Rejection`
with a short stable `reason` code and a `detail` naming the field.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Limits. Message size is checked before decoding, so a hostile producer cannot make us parse
# megabytes; nesting depth is checked before json.loads so deep input cannot exhaust the C stack.
MAX_MESSAGE_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
MAX_SAMPLES = 4096
MAX_ABS_SAMPLE_MV = 1e6  # far beyond any ECG; keeps window sums/means finite
MAX_DEVICE_ID_CHARS = 64
MAX_ID_CHARS = 256  # patient_id, patient_name
MAX_GROUP_CHARS = 64
MAX_LEAD_CHARS = 16
MAX_ZIP_DIGITS = 10
MIN_FS_HZ, MAX_FS_HZ = 1.0, 2000.0
MIN_HR_BPM, MAX_HR_BPM = 10.0, 350.0
MIN_AGE, MAX_AGE = 0, 120
SEXES = frozenset({"F", "M", "U"})
MIN_TS_MS = 1_262_304_000_000  # 2010-01-01T00:00:00Z
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z (exclusive)
MAX_CONTROL_TS_MS = 2**63 - 1  # control frames may carry any Kafka-valid far-future timestamp
DEFAULT_LEAD = "II"
# `lead` is published as a tag, so it may only name an ECG lead: a free-form string would carry whatever a device
# put there (a patient id, a name) into every output. Standard 12 leads, right-sided and posterior chest leads,
# the modified limb leads of Holter/MIT-BIH recordings, bipolar chest leads and Frank's X, Y, Z (case-insensitive;
# published in this spelling).
LEAD_NAMES = frozenset({
    "I", "II", "III", "aVR", "aVL", "aVF",
    *(f"V{n}" for n in range(1, 10)), *(f"V{n}R" for n in range(1, 7)),
    "ML", "MLI", "MLII", "MLIII", *(f"CM{n}" for n in range(1, 7)), *(f"CC{n}" for n in range(1, 7)),
    "D1", "D2", "D3", "X", "Y", "Z",
})
_LEAD_BY_UPPER = {name.upper(): name for name in LEAD_NAMES}

CONTROL_END_OF_STREAM = "end-of-stream"
CONTROL_KINDS = frozenset({CONTROL_END_OF_STREAM})

# Stable reason codes (the dead-letter topic and metrics are keyed by these).
REASON_NOT_UTF8 = "not_utf8"
REASON_INVALID_JSON = "invalid_json"
REASON_DUPLICATE_KEY = "duplicate_key"
REASON_TOO_DEEP = "too_deep"
REASON_OVERSIZED = "oversized"
REASON_MISSING_FIELD = "missing_field"
REASON_WRONG_TYPE = "wrong_type"
REASON_OUT_OF_RANGE = "out_of_range"
REASON_INVALID_FORMAT = "invalid_format"
REASON_NON_FINITE_SAMPLE = "non_finite_sample"
REASON_EMPTY_SAMPLES = "empty_samples"
REASON_TOO_MANY_SAMPLES = "too_many_samples"
REASON_TS_MISMATCH = "ts_mismatch"
REASON_INTERNAL_ERROR = "internal_error"  # safety net only; tests assert it never happens

REASONS = frozenset(
    {
        REASON_NOT_UTF8,
        REASON_INVALID_JSON,
        REASON_DUPLICATE_KEY,
        REASON_TOO_DEEP,
        REASON_OVERSIZED,
        REASON_MISSING_FIELD,
        REASON_WRONG_TYPE,
        REASON_OUT_OF_RANGE,
        REASON_INVALID_FORMAT,
        REASON_NON_FINITE_SAMPLE,
        REASON_EMPTY_SAMPLES,
        REASON_TOO_MANY_SAMPLES,
        REASON_TS_MISMATCH,
        REASON_INTERNAL_ERROR,
    }
)

KNOWN_FIELDS = frozenset(
    {"device_id", "patient_id", "patient_name", "ts", "fs", "lead", "samples", "hr_bpm", "age", "sex", "zip"}
)


@dataclass(frozen=True, slots=True, eq=False)
class EcgFrame:
    """One valid frame. `eq=False` because ndarray equality is element-wise."""

    device_id: str
    patient_id: str
    patient_name: str | None
    ts_ms: int
    fs: float
    lead: str
    samples: np.ndarray
    hr_bpm: float | None
    age: int
    sex: str
    zip: str
    group: str
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Control:
    """Control message, e.g. the simulator's far-future end-of-stream frame per partition."""

    kind: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str


ParseResult = EcgFrame | Control | Rejection


class _Reject(Exception):
    """Internal: carries a rejection out of nested validation helpers."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


# JSON strings removed before bracket counting, so brackets inside strings do not count as nesting.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN_BRACKETS = np.zeros(256, dtype=np.int8)
_OPEN_BRACKETS[[ord("["), ord("{")]] = 1
_OPEN_BRACKETS[[ord("]"), ord("}")]] = -1


def _duplicate_key_detail(key: str) -> str:
    # Field names are input too: name the contract's own, count the characters of any other.
    return f"duplicate key {key!r}" if key in KNOWN_FIELDS else f"duplicate key (a field name of {len(key)} chars)"


def _json_error_detail(error: ValueError) -> str:
    # Where the JSON broke, never the text around it (json's messages quote no input, other ValueErrors may).
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at char {error.pos}"
    return f"{type(error).__name__} while decoding JSON"


def _nesting_depth_exceeds(value: bytes, limit: int) -> bool:
    # Fast path: a normal frame has two brackets in total, so it cannot be deeper than the limit.
    if value.count(b"[") + value.count(b"{") <= limit:
        return False
    without_strings = _JSON_STRING.sub(b'""', value)
    deltas = _OPEN_BRACKETS[np.frombuffer(without_strings, dtype=np.uint8)]
    return bool(deltas.size) and int(np.cumsum(deltas, dtype=np.int64).max()) > limit


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _encodable(text: str) -> bool:
    # Lone surrogates (from "\ud800" escapes) cannot be encoded as UTF-8 for keys, tags or HMACs.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _require(obj: dict[str, Any], name: str) -> Any:
    if name not in obj:
        raise _Reject(REASON_MISSING_FIELD, name)
    return obj[name]


def _string(value: Any, name: str, min_chars: int, max_chars: int, *, printable: bool = True) -> str:
    """`printable` for values that become Kafka keys or InfluxDB tags, where control characters
    break line protocol and logs; free text (names) only has to be encodable."""
    if not isinstance(value, str):
        raise _Reject(REASON_WRONG_TYPE, f"{name}: expected string, got {_type_name(value)}")
    if not min_chars <= len(value) <= max_chars:
        raise _Reject(REASON_OUT_OF_RANGE, f"{name}: length {len(value)} not in {min_chars}..{max_chars}")
    if printable and not value.isprintable():  # also false for lone surrogates
        raise _Reject(REASON_INVALID_FORMAT, f"{name}: control or unprintable characters")
    if not printable and not _encodable(value):
        raise _Reject(REASON_INVALID_FORMAT, f"{name}: lone surrogate")
    return value


def _optional_string(value: Any, name: str, max_chars: int, *, printable: bool = True) -> str | None:
    # JSON null for an optional field means absent (a common producer habit).
    if value is None:
        return None
    return _string(value, name, 1, max_chars, printable=printable)


def _lead(value: str | None) -> str:
    if value is None:
        return DEFAULT_LEAD
    lead = _LEAD_BY_UPPER.get(value.upper())
    if lead is None:
        raise _Reject(REASON_INVALID_FORMAT, "lead: not a known ECG lead name")
    return lead


def _integer(value: Any, name: str, low: int, high: int) -> int:
    """Integer in [low, high]; bool is an int subclass in Python but not a JSON number."""
    if type(value) is not int:
        raise _Reject(REASON_WRONG_TYPE, f"{name}: expected integer, got {_type_name(value)}")
    if not low <= value <= high:
        raise _Reject(REASON_OUT_OF_RANGE, f"{name}: not in {low}..{high}")
    return value


def _number(value: Any, name: str, low: float, high: float) -> float:
    if type(value) is not int and type(value) is not float:
        raise _Reject(REASON_WRONG_TYPE, f"{name}: expected number, got {_type_name(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise _Reject(REASON_OUT_OF_RANGE, f"{name}: too large") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise _Reject(REASON_OUT_OF_RANGE, f"{name}: not in {low:g}..{high:g}")
    return number


def _samples(value: Any) -> np.ndarray:
    if not isinstance(value, list):
        raise _Reject(REASON_WRONG_TYPE, f"samples: expected array, got {_type_name(value)}")
    if not value:
        raise _Reject(REASON_EMPTY_SAMPLES, "samples: empty array")
    if len(value) > MAX_SAMPLES:
        raise _Reject(REASON_TOO_MANY_SAMPLES, f"samples: {len(value)} > {MAX_SAMPLES}")
    # set(map(type, ...)) runs at C speed; exact types exclude bool (and str, None, nested lists).
    element_types = set(map(type, value))
    if not element_types <= {float, int}:
        for index, element in enumerate(value):
            if type(element) is not float and type(element) is not int:
                raise _Reject(REASON_WRONG_TYPE, f"samples[{index}]: expected number, got {_type_name(element)}")
    try:
        array = np.array(value, dtype=np.float64)
    except OverflowError:  # an integer literal beyond float range
        array = np.array([float(x) if abs(x) < 2**1023 else math.inf for x in value], dtype=np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        index = int(np.argmin(finite))
        raise _Reject(REASON_NON_FINITE_SAMPLE, f"samples[{index}]: {float(array[index])!r}")
    too_large = np.abs(array) > MAX_ABS_SAMPLE_MV
    if too_large.any():
        index = int(np.argmax(too_large))
        raise _Reject(REASON_OUT_OF_RANGE, f"samples[{index}]: |value| > {MAX_ABS_SAMPLE_MV:g} mV")
    return array


def _control(obj: dict[str, Any]) -> Control:
    kind = obj["control"]
    if not isinstance(kind, str):
        raise _Reject(REASON_WRONG_TYPE, f"control: expected string, got {_type_name(kind)}")
    if kind not in CONTROL_KINDS:
        raise _Reject(REASON_OUT_OF_RANGE, f"control: unknown kind ({len(kind)} chars)")
    ts_ms = _integer(_require(obj, "ts"), "ts", 0, MAX_CONTROL_TS_MS)
    return Control(kind=kind, ts_ms=ts_ms)


def _frame(obj: dict[str, Any], record_timestamp_ms: int | None, group_field: str, ts_tolerance_ms: int) -> EcgFrame:
    device_id = _string(_require(obj, "device_id"), "device_id", 1, MAX_DEVICE_ID_CHARS)
    patient_id = _string(_require(obj, "patient_id"), "patient_id", 1, MAX_ID_CHARS, printable=False)
    patient_name = _optional_string(obj.get("patient_name"), "patient_name", MAX_ID_CHARS, printable=False)
    ts_ms = _integer(_require(obj, "ts"), "ts", MIN_TS_MS, MAX_TS_MS - 1)
    fs = _number(_require(obj, "fs"), "fs", MIN_FS_HZ, MAX_FS_HZ)
    lead = _lead(_optional_string(obj.get("lead"), "lead", MAX_LEAD_CHARS))
    samples = _samples(_require(obj, "samples"))
    raw_hr = obj.get("hr_bpm")
    hr_bpm = None if raw_hr is None else _number(raw_hr, "hr_bpm", MIN_HR_BPM, MAX_HR_BPM)
    age = _integer(_require(obj, "age"), "age", MIN_AGE, MAX_AGE)
    sex = _require(obj, "sex")
    if not isinstance(sex, str):
        raise _Reject(REASON_WRONG_TYPE, f"sex: expected string, got {_type_name(sex)}")
    if sex not in SEXES:
        raise _Reject(REASON_OUT_OF_RANGE, "sex: not one of F, M, U")
    zip_code = _require(obj, "zip")
    if not isinstance(zip_code, str):
        raise _Reject(REASON_WRONG_TYPE, f"zip: expected string, got {_type_name(zip_code)}")
    if not 1 <= len(zip_code) <= MAX_ZIP_DIGITS:
        raise _Reject(REASON_OUT_OF_RANGE, f"zip: length {len(zip_code)} not in 1..{MAX_ZIP_DIGITS}")
    if not (zip_code.isascii() and zip_code.isdigit()):
        raise _Reject(REASON_INVALID_FORMAT, "zip: not all ASCII digits")

    known = {
        "device_id": device_id,
        "patient_id": patient_id,
        "patient_name": patient_name,
        "lead": lead,
        "sex": sex,
        "zip": zip_code,
    }
    if group_field in known:
        group_value = known[group_field]
        if group_value is None:
            raise _Reject(REASON_MISSING_FIELD, group_field)
        group = str(group_value)
    elif group_field in KNOWN_FIELDS:  # numeric field as group key (e.g. age): use its JSON text
        group = str(obj[group_field])
    else:
        group = _string(_require(obj, group_field), group_field, 1, MAX_GROUP_CHARS)

    if record_timestamp_ms is not None and abs(ts_ms - record_timestamp_ms) > ts_tolerance_ms:
        raise _Reject(
            REASON_TS_MISMATCH,
            f"ts: differs from the record timestamp by more than {ts_tolerance_ms} ms",
        )

    extras = {key: value for key, value in obj.items() if key not in KNOWN_FIELDS and key != group_field}
    return EcgFrame(
        device_id=device_id,
        patient_id=patient_id,
        patient_name=patient_name,
        ts_ms=ts_ms,
        fs=fs,
        lead=lead,
        samples=samples,
        hr_bpm=hr_bpm,
        age=age,
        sex=sex,
        zip=zip_code,
        group=group,
        extras=extras,
    )


def parse_frame(
    value: bytes,
    record_timestamp_ms: int | None = None,
    *,
    group_field: str = "site",
    ts_tolerance_ms: int = 60_000,
) -> ParseResult:
    """Validate one `ecg-raw` message. Never raises; returns a frame, a control message or a rejection.

    `record_timestamp_ms` is the Kafka record timestamp: windowing uses it, so a frame whose `ts`
    disagrees by more than `ts_tolerance_ms` is rejected (`ts_mismatch`).
    """
    try:
        return _parse(value, record_timestamp_ms, group_field, ts_tolerance_ms)
    except _Reject as rejection:
        return Rejection(rejection.reason, rejection.detail)
    except Exception as error:  # noqa: BLE001 -- safety net: the job must never stop on input
        return Rejection(REASON_INTERNAL_ERROR, type(error).__name__)


def _parse(value: bytes, record_timestamp_ms: int | None, group_field: str, ts_tolerance_ms: int) -> ParseResult:
    if value is None:  # Kafka tombstone
        raise _Reject(REASON_INVALID_JSON, "empty message (null value)")
    if not isinstance(value, bytes):
        value = bytes(value)
    if len(value) > MAX_MESSAGE_BYTES:
        raise _Reject(REASON_OVERSIZED, f"message: {len(value)} bytes > {MAX_MESSAGE_BYTES}")
    if not value:
        raise _Reject(REASON_INVALID_JSON, "empty message")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _Reject(REASON_NOT_UTF8, f"message: invalid UTF-8 at byte {error.start}") from None
    if _nesting_depth_exceeds(value, MAX_JSON_DEPTH):
        raise _Reject(REASON_TOO_DEEP, f"message: nesting deeper than {MAX_JSON_DEPTH}")

    non_standard_constants: list[str] = []

    def keep_constant(name: str) -> float:
        # NaN/Infinity are not JSON. Keep them as floats so a NaN sample is reported as
        # `non_finite_sample` with its index; anywhere else it is rejected below as invalid JSON.
        non_standard_constants.append(name)
        return float(name)

    try:
        obj = json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=keep_constant)
    except _DuplicateKey as duplicate:
        raise _Reject(REASON_DUPLICATE_KEY, _duplicate_key_detail(duplicate.key)) from None
    except RecursionError:
        raise _Reject(REASON_TOO_DEEP, "message: nesting too deep") from None
    except ValueError as error:  # JSONDecodeError, and int literals beyond sys.get_int_max_str_digits
        raise _Reject(REASON_INVALID_JSON, _json_error_detail(error)) from None

    if not isinstance(obj, dict):
        raise _Reject(REASON_INVALID_JSON, f"top level: expected object, got {_type_name(obj)}")
    if "control" in obj:
        result: ParseResult = _control(obj)
    else:
        result = _frame(obj, record_timestamp_ms, group_field, ts_tolerance_ms)
    if non_standard_constants:
        raise _Reject(REASON_INVALID_JSON, f"non-standard constant {non_standard_constants[0]} outside samples")
    return result
