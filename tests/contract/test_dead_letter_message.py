"""Dead-letter JSON: fields, truncation at 64 KiB, base64 for non-UTF-8 input."""

from __future__ import annotations

import base64
import json

from contract.bad_input_corpus import BAD_INPUTS
from contract.frames import DEAD_LETTER_RAW_LIMIT, Rejection, dead_letter_message, parse_frame

FIELDS = {"reason", "detail", "raw", "raw_encoding", "raw_bytes", "topic", "partition", "offset"}


def test_fields_for_utf8_input() -> None:
    value = b'{"device_id": "dev-1"}'
    rejection = parse_frame(value)
    assert isinstance(rejection, Rejection)
    message = json.loads(dead_letter_message(value, rejection, "ecg-raw", 3, 1234))
    assert set(message) == FIELDS
    assert message == {
        "reason": "missing_field",
        "detail": "patient_id",
        "raw": value.decode(),
        "raw_encoding": "utf-8",
        "raw_bytes": len(value),
        "topic": "ecg-raw",
        "partition": 3,
        "offset": 1234,
    }


def test_non_utf8_input_is_base64() -> None:
    value = b"\xff\x00binary\x80"
    message = json.loads(dead_letter_message(value, Rejection("not_utf8", "message"), "t", 0, 7))
    assert message["raw_encoding"] == "base64"
    assert base64.b64decode(message["raw"]) == value
    assert message["raw_bytes"] == len(value)


def test_truncation_to_64_kib() -> None:
    value = b'{"pad": "' + b"x" * 200_000 + b'"}'
    message = json.loads(dead_letter_message(value, Rejection("oversized", "message"), "t", 0, 0))
    assert message["raw"] == value[:DEAD_LETTER_RAW_LIMIT].decode()
    assert message["raw_bytes"] == len(value)

    binary = b"\xff" * 100_000
    message = json.loads(dead_letter_message(binary, Rejection("not_utf8", "message"), "t", 0, 0))
    assert base64.b64decode(message["raw"]) == binary[:DEAD_LETTER_RAW_LIMIT]


def test_truncation_does_not_split_a_multibyte_character() -> None:
    value = b"a" + "é".encode() * 40_000  # 2-byte characters straddle the 64 KiB cut
    message = json.loads(dead_letter_message(value, Rejection("invalid_json", "x"), "t", 0, 0))
    assert message["raw_encoding"] == "utf-8"
    assert message["raw"] == value[: DEAD_LETTER_RAW_LIMIT - 1].decode()
    assert len(message["raw"].encode()) <= DEAD_LETTER_RAW_LIMIT


def test_every_corpus_entry_yields_a_bounded_dead_letter() -> None:
    for entry in BAD_INPUTS:
        rejection = parse_frame(entry.value, entry.record_timestamp_ms)
        assert isinstance(rejection, Rejection)
        encoded = dead_letter_message(entry.value, rejection, "ecg-raw", 0, 0)
        message = json.loads(encoded)
        assert message["reason"] == entry.expected_reason
        assert len(encoded) < 7 * DEAD_LETTER_RAW_LIMIT  # worst case: 64 KiB of \u00XX escapes
