"""Drop free-text values that look like protected health information from a frame's extras."""

from __future__ import annotations

import re
from typing import Any

# Patterns are deliberately broad: a false positive only drops an optional extra field,
# a false negative leaks PHI.
_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
    "ssn": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
    # +49 30 1234567, (555) 123-4567, 555.123.4567, 0301234567: >= 7 digits with separators
    "phone": re.compile(r"(?<![\w.])(?:\+|00)?\(?\d[\d\s().-]{5,}\d(?![\w.])"),
    "mrn": re.compile(r"\b(?:MRN|PID|PATIENT[-_ ]?ID)[-_:#\s]*\w*\d", re.IGNORECASE),
}
_MIN_PHONE_DIGITS = 7

# Keys whose values are direct identifiers whatever they contain.
_PHI_KEYS = frozenset(
    k.lower()
    for k in (
        "patient_id",
        "patient_name",
        "name",
        "first_name",
        "last_name",
        "email",
        "phone",
        "mobile",
        "address",
        "street",
        "ssn",
        "mrn",
        "dob",
        "birth_date",
        "date_of_birth",
    )
)


def looks_like_phi(text: str) -> bool:
    """True if ``text`` contains an e-mail, phone-, SSN- or MRN-like token."""
    for kind, pat in _PATTERNS.items():
        for m in pat.finditer(text):
            if kind != "phone" or sum(c.isdigit() for c in m.group()) >= _MIN_PHONE_DIGITS:
                return True
    return False


def _scrub(value: Any) -> tuple[Any, int, bool]:
    """Return (clean value, phi count, keep?) for one value, recursing into dicts and lists."""
    if isinstance(value, str):
        return (None, 1, False) if looks_like_phi(value) else (value, 0, True)
    if isinstance(value, dict):
        clean, n = scrub_extras(value)
        return clean, n, True
    if isinstance(value, (list, tuple)):
        out: list[Any] = []
        total = 0
        for item in value:
            v, n, keep = _scrub(item)
            total += n
            if keep:
                out.append(v)
        return out, total, True
    return value, 0, True


def scrub_extras(extras: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Return ``(clean_extras, phi_count)``: string values (also nested in dicts/lists) that look
    like PHI are dropped, as are values under identifier-like keys; each drop counts once."""
    clean: dict[str, Any] = {}
    count = 0
    for key in sorted(extras, key=str):  # sorted: deterministic output for replays
        value = extras[key]
        if str(key).lower() in _PHI_KEYS and value not in (None, ""):
            count += 1
            continue
        v, n, keep = _scrub(value)
        count += n
        if keep:
            clean[key] = v
    return clean, count
