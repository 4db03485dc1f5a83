"""Dead letters without patient identifiers (docs/contract.md, "Dead letters").

A dead letter tells an operator what was wrong with an input message and where it is, nothing more:
reason, a detail that names fields but never quotes their values, the message's position (topic,
partition, offset, record timestamp), its size, its structure (field names of the contract, types,
lengths, sample count), the device id when the message has a valid one, and the patient's pseudonym
(never the id) when one can be derived. The raw bytes stay in the input topic, addressed by position.

For sites whose input retention is shorter than their repair time, ``DLQ_RAW=encrypted`` adds the whole
raw message sealed with AES-256-GCM under a key of its own (``DLQ_RAW_KEY``, never the pseudonym secret),
bound to its position (associated data), with a key id; ``DLQ_RAW=plain`` adds it in clear (an explicit
opt-in that the job logs at start). Pure Python (no pyflink): the parse operator, the tests and the
replay tooling share it.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Any

from contract.frames import (
    KNOWN_FIELDS,
    MAX_DEVICE_ID_CHARS,
    MAX_GROUP_CHARS,
    MAX_ID_CHARS,
    MAX_MESSAGE_BYTES,
    REASON_NOT_UTF8,
    REASON_OVERSIZED,
    REASON_TOO_DEEP,
    Rejection,
)
from privacy.pseudonym import pseudonymize

RAW_NONE = "none"
RAW_ENCRYPTED = "encrypted"
RAW_PLAIN = "plain"
RAW_MODES = (RAW_NONE, RAW_ENCRYPTED, RAW_PLAIN)
SEAL_ALGORITHM = "AES-256-GCM"
SEAL_KEY_BYTES = 32
_NONCE_BYTES = 12
# Reasons whose message is not looked into: not text, too large to parse, or nested too deep.
_UNREADABLE = frozenset({REASON_NOT_UTF8, REASON_OVERSIZED, REASON_TOO_DEEP})
_MASK = "***"
# A raw copy (DLQ_RAW=encrypted/plain) only up to this size, so that a letter stays below Kafka's default
# 1 MB record limit after base64; a valid frame is a few tens of KiB, larger ones are re-read by position.
RAW_COPY_LIMIT = 512 * 1024
_MIN_MASKED_CHARS = 3  # shorter values ("F", "12") are too common to carry anything, and masking them mangles text


class DeadLetterError(ValueError):
    """A sealed raw message cannot be opened (wrong key, tampered letter, unknown format)."""


@dataclass(frozen=True)
class Position:
    """Where a message is in the input topic; enough to read it again."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class DeadLetterOptions:
    """How letters are written. ``secret`` etc. derive the pseudonym exactly as the parse step does."""

    secret: bytes
    pid_hex_chars: int = 32
    scope_by_group: bool = True
    group_field: str = "site"
    raw_mode: str = RAW_NONE
    raw_key: bytes = b""
    raw_key_id: str = ""

    def __post_init__(self) -> None:
        if self.raw_mode not in RAW_MODES:
            raise ValueError(f"raw_mode must be one of {', '.join(RAW_MODES)}")
        if self.raw_mode == RAW_ENCRYPTED and len(self.raw_key) != SEAL_KEY_BYTES:
            raise ValueError(f"raw_mode encrypted needs a {SEAL_KEY_BYTES}-byte key")

    def __repr__(self) -> str:  # never print the keys
        return (f"DeadLetterOptions(raw_mode={self.raw_mode!r}, raw_key_id={self.raw_key_id!r}, "
                f"group_field={self.group_field!r}, scope_by_group={self.scope_by_group})")


def _associated_data(position: Position) -> bytes:
    # Binds a sealed message to its position: a ciphertext copied into another letter does not open.
    return f"{position.topic}\x1f{position.partition}\x1f{position.offset}".encode()


def seal_raw(raw: bytes, position: Position, key: bytes, key_id: str) -> dict[str, str]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, raw, _associated_data(position))
    return {
        "algorithm": SEAL_ALGORITHM,
        "key_id": key_id,
        "nonce": base64.b64encode(nonce).decode("ascii"),
        "ciphertext": base64.b64encode(sealed).decode("ascii"),
    }


def open_raw(letter: dict[str, Any], keys: dict[str, bytes]) -> bytes:
    """The original message of a letter written with DLQ_RAW=encrypted or plain; ``keys`` maps key ids to keys."""
    raw = letter.get("raw")
    if raw is None:
        raise DeadLetterError("the letter holds no raw message (DLQ_RAW=none): re-read it by position")
    if letter.get("raw_encoding") == "base64" and isinstance(raw, str):
        return base64.b64decode(raw)
    if letter.get("raw_encoding") == "utf-8" and isinstance(raw, str):
        return raw.encode("utf-8")
    if not isinstance(raw, dict) or raw.get("algorithm") != SEAL_ALGORITHM:
        raise DeadLetterError("unknown raw format")
    key = keys.get(str(raw.get("key_id")))
    if key is None:
        raise DeadLetterError(f"no key for key id {raw.get('key_id')!r}")
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    position = Position(str(letter["topic"]), int(letter["partition"]), int(letter["offset"]))
    try:
        return AESGCM(key).decrypt(base64.b64decode(raw["nonce"]), base64.b64decode(raw["ciphertext"]),
                                   _associated_data(position))
    except InvalidTag:
        raise DeadLetterError("the sealed message does not open with this key at this position") from None


def _look_into(value: bytes, reason: str) -> dict[str, Any] | None:
    """The message as a JSON object, if it is one that can be read safely; else None."""
    if reason in _UNREADABLE or len(value) > MAX_MESSAGE_BYTES:
        return None
    try:
        obj = json.loads(value.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _shape(value: Any) -> dict[str, Any]:
    shape: dict[str, Any] = {"type": _type_name(value)}
    if isinstance(value, str):
        shape["chars"] = len(value)
    elif isinstance(value, (list, dict)):
        shape["items"] = len(value)
    return shape


def structure(obj: dict[str, Any]) -> dict[str, Any]:
    """Field names of the contract with their types and sizes; other fields are only counted (their
    names are input too, and could be anything)."""
    known = {name: _shape(obj[name]) for name in sorted(KNOWN_FIELDS & obj.keys())}
    return {"fields": known, "other_fields": len(obj.keys() - KNOWN_FIELDS)}


def _usable_id(value: Any, max_chars: int) -> str | None:
    if not isinstance(value, str) or not 1 <= len(value) <= max_chars:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _device_id(obj: dict[str, Any]) -> str | None:
    value = _usable_id(obj.get("device_id"), MAX_DEVICE_ID_CHARS)
    return value if value is not None and value.isprintable() else None


def _pseudonym(obj: dict[str, Any], options: DeadLetterOptions) -> str | None:
    """The pid the parse step would have given this patient, or None when it cannot be told (no usable
    patient_id, or pseudonyms per ward and no usable ward)."""
    patient_id = _usable_id(obj.get("patient_id"), MAX_ID_CHARS)
    if patient_id is None:
        return None
    scope = ""
    if options.scope_by_group:
        group = obj.get(options.group_field)
        if options.group_field not in KNOWN_FIELDS:  # the parser's rule for a ward field of the site's own
            group = _usable_id(group, MAX_GROUP_CHARS)
            if group is None or not group.isprintable():
                return None
        elif isinstance(group, bool) or not isinstance(group, (str, int)) or str(group) == "":
            return None
        scope = str(group)
    return pseudonymize(patient_id, options.secret, options.pid_hex_chars, scope=scope)


def _input_strings(obj: Any) -> set[str]:
    """Every string in the message, keys included."""
    found: set[str] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict):
            found.update(key for key in item if isinstance(key, str))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def mask_detail(detail: str, obj: dict[str, Any] | None) -> str:
    """Second line of defence behind the parser's details (which name fields, not values): any string of
    the message that still appears in the detail is replaced by ***. Field names of the contract stay."""
    if obj is None:
        return detail
    for text in sorted(_input_strings(obj) - KNOWN_FIELDS, key=len, reverse=True):
        if len(text) >= _MIN_MASKED_CHARS and text in detail:
            detail = detail.replace(text, _MASK)
    return detail


def dead_letter(value: bytes | None, rejection: Rejection, position: Position, options: DeadLetterOptions) -> bytes:
    """The JSON of one letter (see the module docstring)."""
    raw = b"" if value is None else bytes(value)
    obj = _look_into(raw, rejection.reason)
    letter: dict[str, Any] = {
        "reason": rejection.reason,
        "detail": mask_detail(rejection.detail, obj),
        "topic": position.topic,
        "partition": position.partition,
        "offset": position.offset,
        "timestamp": position.timestamp_ms,
        "raw_bytes": len(raw),
        "device_id": None if obj is None else _device_id(obj),
        "pid": None if obj is None else _pseudonym(obj, options),
        "structure": None if obj is None else structure(obj),
        "raw": None,
    }
    if options.raw_mode != RAW_NONE and len(raw) <= RAW_COPY_LIMIT:
        if options.raw_mode == RAW_ENCRYPTED:
            letter["raw"] = seal_raw(raw, position, options.raw_key, options.raw_key_id)
        else:
            try:
                letter["raw"], letter["raw_encoding"] = raw.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                letter["raw"], letter["raw_encoding"] = base64.b64encode(raw).decode("ascii"), "base64"
    elif options.raw_mode != RAW_NONE:
        # Far larger than any valid frame: re-read it by position.
        letter["raw_omitted"] = f"larger than {RAW_COPY_LIMIT} bytes"
    return json.dumps(letter, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def late_letter(pid: str, event_ts_ms: int, position: Position, window_seconds: int) -> str:
    """A valid frame that arrived after its window closed: the parse step already removed its identifiers,
    so the letter has its pseudonym and position, never the message."""
    return json.dumps(
        {
            "reason": "late",
            "detail": f"event time behind the watermark (window {window_seconds}s)",
            "topic": position.topic,
            "partition": position.partition,
            "offset": position.offset,
            "timestamp": position.timestamp_ms,
            "event_ts": event_ts_ms,
            "pid": pid,
            "raw": None,
        },
        sort_keys=True,
    )
