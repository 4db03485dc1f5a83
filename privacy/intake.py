"""From a validated contract frame to the core's Frame: the point where identifiers are removed.

`patient_id` becomes its HMAC pseudonym, `patient_name` and PHI-looking extras are dropped, and the
configured quasi-identifiers are collected. Pure (no pyflink): the parse operator and the tests'
reference model both call it, so they cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.frames import EcgFrame, Rejection
from privacy.model import Frame
from privacy.phi import scrub_extras
from privacy.pseudonym import pseudonymize

_CONTRACT_QI_FIELDS = ("age", "sex", "zip")


@dataclass(frozen=True)
class IntakeOptions:
    secret: bytes
    pid_hex_chars: int
    quasi_identifiers: tuple[str, ...]
    sensitive_attribute: str = ""
    scope_by_group: bool = True  # pseudonyms per group key (ward): see docs/privacy.md


def to_core_frame(parsed: EcgFrame, options: IntakeOptions) -> tuple[Frame | Rejection, int]:
    """(core frame or rejection, number of PHI-looking extra fields dropped)."""
    extras, phi_count = scrub_extras(dict(parsed.extras))
    qi: dict[str, Any] = {}
    for name in options.quasi_identifiers:
        value = getattr(parsed, name) if name in _CONTRACT_QI_FIELDS else extras.get(name)
        if value is None:
            return Rejection("missing_field", f"quasi-identifier {name}"), phi_count
        qi[name] = value
    sensitive = extras.get(options.sensitive_attribute) if options.sensitive_attribute else None
    frame = Frame(
        pid=pseudonymize(parsed.patient_id, options.secret, options.pid_hex_chars,
                         scope=parsed.group if options.scope_by_group else ""),
        ts_ms=parsed.ts_ms,
        fs=float(parsed.fs),
        samples=np.asarray(parsed.samples, dtype=np.float64),
        qi=qi,
        lead=parsed.lead,
        hr_bpm=math.nan if parsed.hr_bpm is None else float(parsed.hr_bpm),
        sensitive=None if sensitive is None else str(sensitive),
    )
    return frame, phi_count
