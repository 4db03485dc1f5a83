"""Keyed pseudonyms for patient identifiers (HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac

MIN_HEX_CHARS = 16  # 64 bits: collisions stay negligible for any realistic patient population
MAX_HEX_CHARS = 64  # full SHA-256 digest


def pseudonymize(patient_id: str, secret: bytes, hex_chars: int = 32, scope: str = "") -> str:
    """Return the HMAC-SHA256 of ``patient_id`` under ``secret`` as lowercase hex, truncated.

    A keyed hash (not a plain hash) so nobody without the secret can rebuild the mapping by
    hashing a list of known MRNs. A non-empty ``scope`` (e.g. the ward) makes the pseudonym depend on
    it too: the same patient in two scopes gets two unlinkable pseudonyms. Raises ``ValueError`` for
    an empty secret or < 16 hex chars.
    """
    if not isinstance(secret, (bytes, bytearray)) or len(secret) == 0:
        raise ValueError("pseudonymization secret must be non-empty bytes")
    if not isinstance(hex_chars, int) or not MIN_HEX_CHARS <= hex_chars <= MAX_HEX_CHARS:
        raise ValueError(f"hex_chars must be an int in {MIN_HEX_CHARS}..{MAX_HEX_CHARS}, got {hex_chars!r}")
    if not isinstance(patient_id, str) or patient_id == "":
        raise ValueError("patient_id must be a non-empty string")
    message = patient_id if not scope else f"{scope}\x1f{patient_id}"  # unit separator: no id contains it
    digest = hmac.new(bytes(secret), message.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:hex_chars]


def suppression_token_key(secret: bytes) -> bytes:
    """The key of the window-scoped tokens that stand in for suppressed patients' pseudonyms
    (privacy.kanonymity.suppression_token), derived from the pseudonym secret so that it needs no
    setting of its own and differs from it."""
    if not isinstance(secret, (bytes, bytearray)) or len(secret) == 0:
        raise ValueError("pseudonymization secret must be non-empty bytes")
    return hmac.new(bytes(secret), b"ecg-flink-anon suppression tokens v1", hashlib.sha256).digest()
