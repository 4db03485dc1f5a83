"""Dead letters hold no patient data: every corpus entry, details masked, the raw message only sealed."""

from __future__ import annotations

import base64
import json

import pytest

from connectors.config import ConfigError, load_settings
from contract.frames import KNOWN_FIELDS, Rejection, parse_frame
from devstack.bad_input_corpus import BAD_INPUTS, valid_frame
from privacy.dead_letters import (
    RAW_COPY_LIMIT,
    DeadLetterError,
    DeadLetterOptions,
    Position,
    dead_letter,
    late_letter,
    mask_detail,
    open_raw,
)
from privacy.pseudonym import pseudonymize

SECRET = b"dead-letter-test-secret"
KEY = bytes(range(32))
OPTIONS = DeadLetterOptions(secret=SECRET)
SEALED = DeadLetterOptions(secret=SECRET, raw_mode="encrypted", raw_key=KEY, raw_key_id="k1")
WHERE = Position("ecg-raw", 3, 1234, 1_763_812_800_123)
IDENTIFIERS = ("MRN-0001234", "Jane Doe", "Jürgen")


def _strings(obj: object) -> set[str]:
    if isinstance(obj, str):
        return {obj}
    if isinstance(obj, dict):
        return set().union(*(({k} | _strings(v)) for k, v in obj.items())) if obj else set()
    if isinstance(obj, list):
        return set().union(*(_strings(v) for v in obj)) if obj else set()
    return set()


def _letter(value: bytes, options: DeadLetterOptions = OPTIONS, record_ts: int | None = None) -> dict:
    rejection = parse_frame(value, record_ts)
    assert isinstance(rejection, Rejection), value[:80]
    return json.loads(dead_letter(value, rejection, WHERE, options))


def test_a_letter_names_reason_position_structure_device_and_pseudonym_never_the_patient() -> None:
    frame = valid_frame()
    frame["age"] = 130
    value = json.dumps(frame).encode()
    letter = _letter(value)
    assert letter == {
        "reason": "out_of_range",
        "detail": "age: not in 0..120",
        "topic": "ecg-raw", "partition": 3, "offset": 1234, "timestamp": 1_763_812_800_123,
        "raw_bytes": len(value),
        "device_id": "dev-0042",
        "pid": pseudonymize("MRN-0001234", SECRET, 32, scope="ward-3"),
        "structure": {
            "fields": {
                "age": {"type": "number"}, "device_id": {"type": "string", "chars": 8}, "fs": {"type": "number"},
                "hr_bpm": {"type": "number"}, "lead": {"type": "string", "chars": 2},
                "patient_id": {"type": "string", "chars": 11}, "patient_name": {"type": "string", "chars": 8},
                "samples": {"type": "array", "items": 6}, "sex": {"type": "string", "chars": 1},
                "ts": {"type": "number"}, "zip": {"type": "string", "chars": 5},
            },
            "other_fields": 1,  # site: not a field of the contract's own, so only counted
        },
        "raw": None,
    }


def test_pseudonym_follows_the_scope_and_is_absent_when_it_cannot_be_told() -> None:
    frame = valid_frame()
    frame["sex"] = "X"
    value = json.dumps(frame).encode()
    global_scope = DeadLetterOptions(secret=SECRET, scope_by_group=False)
    assert _letter(value, global_scope)["pid"] == pseudonymize("MRN-0001234", SECRET, 32)
    del frame["site"]
    assert _letter(json.dumps(frame).encode())["pid"] is None  # per-ward pseudonyms, and no ward
    frame["site"], frame["patient_id"] = "ward-3", 1234
    assert _letter(json.dumps(frame).encode())["pid"] is None


@pytest.mark.parametrize("entry", BAD_INPUTS, ids=lambda entry: entry.name)
def test_no_input_value_reaches_a_letter(entry) -> None:  # type: ignore[no-untyped-def]
    letter = _letter(entry.value, record_ts=entry.record_timestamp_ms)
    assert letter["reason"] == entry.expected_reason
    text = json.dumps(letter, ensure_ascii=False)
    assert not [needle for needle in IDENTIFIERS if needle in text], text[:300]
    # Beyond the known identifiers: no string of the message (3+ chars) but the device id and the
    # contract's field names is anywhere in the letter.
    try:
        message = json.loads(entry.value)
    except (ValueError, RecursionError):
        message = None
    allowed = set(KNOWN_FIELDS) | {str(letter["device_id"]), letter["topic"], letter["reason"]}
    found = _strings(letter)
    leaked = {s for s in _strings(message) - allowed if len(s) >= 3 and any(s in f for f in found)}
    assert not leaked, (leaked, letter["detail"])
    assert len(dead_letter(entry.value, Rejection(entry.expected_reason, "x"), WHERE, OPTIONS)) < 4096


def test_details_of_the_parser_quote_no_values() -> None:
    frame = valid_frame()
    frame["sex"] = "Jane Doe"
    assert _letter(json.dumps(frame).encode())["detail"] == "sex: not one of F, M, U"
    duplicated = b'{"Jane Doe": 1, "Jane Doe": 2}'
    assert _letter(duplicated)["detail"] == "duplicate key (a field name of 8 chars)"


def test_mask_detail_is_a_second_line_of_defence() -> None:
    assert mask_detail("sex: 'Jane Doe' unknown", {"sex": "Jane Doe"}) == "sex: '***' unknown"
    assert mask_detail("samples: expected array", {"samples": "samples"}) == "samples: expected array"


def test_sealed_raw_opens_with_its_key_at_its_position_only() -> None:
    frame = valid_frame()
    frame["fs"] = -1
    value = json.dumps(frame).encode()
    letter = _letter(value, SEALED)
    assert letter["raw"]["algorithm"] == "AES-256-GCM" and letter["raw"]["key_id"] == "k1"
    assert not [needle for needle in IDENTIFIERS if needle in json.dumps(letter)]
    assert open_raw(letter, {"k1": KEY}) == value
    with pytest.raises(DeadLetterError, match="no key"):
        open_raw(letter, {"k2": KEY})
    with pytest.raises(DeadLetterError, match="does not open"):
        open_raw(letter, {"k1": bytes(32)})
    moved = {**letter, "offset": letter["offset"] + 1}  # a ciphertext copied into another letter
    with pytest.raises(DeadLetterError, match="does not open"):
        open_raw(moved, {"k1": KEY})
    # Two letters of the same message do not show that they are the same (a fresh nonce each).
    assert _letter(value, SEALED)["raw"]["ciphertext"] != letter["raw"]["ciphertext"]


def test_plain_raw_is_whole_and_binary_is_base64() -> None:
    plain = DeadLetterOptions(secret=SECRET, raw_mode="plain")
    big = json.dumps({**valid_frame(), "pad": "x" * 200_000}).encode()
    letter = json.loads(dead_letter(big, Rejection("out_of_range", "x"), WHERE, plain))
    assert open_raw(letter, {}) == big  # whole: the 64 KiB cut is gone
    binary = b"\xff\x00\x80binary"
    letter = json.loads(dead_letter(binary, Rejection("not_utf8", "x"), WHERE, plain))
    assert letter["raw_encoding"] == "base64" and base64.b64decode(letter["raw"]) == binary
    huge = b"x" * (RAW_COPY_LIMIT + 1)
    letter = json.loads(dead_letter(huge, Rejection("oversized", "x"), WHERE, SEALED))
    assert letter["raw"] is None and "raw_omitted" in letter and letter["raw_bytes"] == len(huge)
    with pytest.raises(DeadLetterError, match="position"):
        open_raw(_letter(b'{"device_id": 1}'), {})


def test_late_letters_carry_the_pseudonym_and_position() -> None:
    letter = json.loads(late_letter("ab" * 16, 1_763_812_800_000, WHERE, 5))
    assert letter["reason"] == "late" and letter["pid"] == "ab" * 16 and letter["raw"] is None
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("ecg-raw", 3, 1234)


def test_settings_check_the_key() -> None:
    env = {"PSEUDONYM_SECRET": "s" * 32, "DLQ_RAW": "encrypted"}
    with pytest.raises(ConfigError, match="DLQ_RAW_KEY: required"):
        load_settings([], environ=env)
    with pytest.raises(ConfigError, match=r"DLQ_RAW_KEY.*must be 32 bytes"):
        load_settings([], environ={**env, "DLQ_RAW_KEY": "short"})
    settings = load_settings([], environ={**env, "DLQ_RAW_KEY": KEY.hex()})
    assert settings.dlq_raw_key == KEY
    assert "'dlq_raw_key': '***'" in repr(settings)
    assert load_settings([], environ={**env, "DLQ_RAW_KEY": base64.b64encode(KEY).decode()}).dlq_raw_key == KEY
    with pytest.raises(ConfigError, match="must differ from PSEUDONYM_SECRET"):
        load_settings([], environ={**env, "PSEUDONYM_SECRET": KEY.hex(), "DLQ_RAW_KEY": KEY.hex()})
