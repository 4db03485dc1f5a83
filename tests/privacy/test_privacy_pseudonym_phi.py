"""privacy.pseudonym and privacy.phi."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from privacy.phi import looks_like_phi, scrub_extras
from privacy.pseudonym import pseudonymize


def test_pseudonym_is_truncated_hmac_sha256() -> None:
    expected = hmac.new(b"k1", b"MRN-0001234", hashlib.sha256).hexdigest()
    assert pseudonymize("MRN-0001234", b"k1") == expected[:32]
    assert pseudonymize("MRN-0001234", b"k1", hex_chars=16) == expected[:16]
    assert pseudonymize("MRN-0001234", b"k1", hex_chars=64) == expected


def test_pseudonym_stable_and_secret_dependent() -> None:
    a = pseudonymize("MRN-0001234", b"k1")
    assert a == pseudonymize("MRN-0001234", b"k1")
    assert a != pseudonymize("MRN-0001234", b"k2")
    assert a != pseudonymize("MRN-0001235", b"k1")
    assert "MRN" not in a and "0001234" not in a


@pytest.mark.parametrize("hex_chars", [0, 8, 15, 65])
def test_pseudonym_rejects_short_or_long_output(hex_chars: int) -> None:
    with pytest.raises(ValueError):
        pseudonymize("x", b"k", hex_chars=hex_chars)


def test_pseudonym_rejects_empty_secret_and_id() -> None:
    with pytest.raises(ValueError):
        pseudonymize("x", b"")
    with pytest.raises(ValueError):
        pseudonymize("", b"k")


@pytest.mark.parametrize(
    "text",
    [
        "call jane.doe@example.org",
        "+49 30 1234567",
        "(555) 123-4567",
        "555.123.4567",
        "SSN 123-45-6789",
        "MRN: 0001234",
        "patient_id 42",
    ],
)
def test_phi_detected(text: str) -> None:
    assert looks_like_phi(text)


@pytest.mark.parametrize("text", ["ward-3", "firmware 1.2.3", "SN12345678", "lead II", "ok", "bpm 72"])
def test_benign_text_kept(text: str) -> None:
    assert not looks_like_phi(text)


def test_scrub_extras_recursive_and_counted() -> None:
    extras = {
        "firmware": "1.2.3",
        "note": "contact jane@example.org",
        "battery": 87,
        "patient_name": "Jane Doe",  # identifier key: dropped whatever it holds
        "device": {"owner": "call +1 (555) 123-4567", "model": "X1"},
        "tags": ["ok", "SSN 123-45-6789", 3],
    }
    clean, count = scrub_extras(extras)
    assert clean == {"battery": 87, "device": {"model": "X1"}, "firmware": "1.2.3", "tags": ["ok", 3]}
    assert count == 4
    assert scrub_extras({}) == ({}, 0)
