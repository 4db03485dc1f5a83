"""Data model of the privacy core: frames in, published frames out (no pyflink)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Frame:
    """One ECG frame as the anonymizer sees it: already pseudonymized, QIs still raw.

    Field order as in docs/architecture.md. ``pid`` must be the pseudonym
    (``privacy.pseudonym.pseudonymize``), never the raw patient id.
    ``hr_bpm`` is ``nan`` (or None) when the device did not send it. ``sensitive`` is the optional sensitive
    attribute used for l-diversity (e.g. a diagnosis code).
    """

    pid: str
    ts_ms: int
    fs: float
    lead: str
    samples: np.ndarray
    hr_bpm: float | None  # nan or None = unknown (derived from R-peaks when published)
    qi: dict[str, Any]
    sensitive: str | None = None

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])


@dataclass(eq=False, slots=True)
class PublishedFrame:
    """One anonymized frame: level 1..8 = generalized QIs + rounded samples, 9 = suppressed
    (QIs ``*``, samples and HR imputed, ``imputed=True``).

    Not frozen (frozen dataclass construction is ~3x slower and windows publish ~10^4-10^5 of
    these); treat as read-only. Frames of one patient share one ``qi`` dict.
    """

    pid: str
    lead: str
    ts_ms: int
    fs: float
    level: int
    qi: dict[str, str]
    ecg_mv: np.ndarray
    hr_bpm: float
    imputed: bool

    @property
    def n_samples(self) -> int:
        return int(self.ecg_mv.shape[0])


@dataclass(frozen=True)
class PatientRow:
    """One row of the published per-patient table (used for checks and NCP)."""

    pid: str
    level: int
    qi: dict[str, str] = field(default_factory=dict)
