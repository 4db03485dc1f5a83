"""Privacy core (pure Python + numpy, no pyflink): pseudonyms, PHI scrubbing, windowed
k-anonymity by local recoding, NCP metrics and heart-rate derivation."""

from privacy.heart_rate import derive_hr_bpm, detect_r_peaks
from privacy.kanonymity import (
    AnonymizationConfig,
    KeyState,
    WindowResult,
    anonymize_window,
    assign_levels,
    patient_table,
)
from privacy.metrics import WindowMetrics, attribute_ncp, ncp_table
from privacy.model import Frame, PatientRow, PublishedFrame
from privacy.phi import looks_like_phi, scrub_extras
from privacy.pseudonym import pseudonymize

__all__ = [
    "AnonymizationConfig",
    "Frame",
    "KeyState",
    "PatientRow",
    "PublishedFrame",
    "WindowMetrics",
    "WindowResult",
    "anonymize_window",
    "assign_levels",
    "attribute_ncp",
    "derive_hr_bpm",
    "detect_r_peaks",
    "looks_like_phi",
    "ncp_table",
    "patient_table",
    "pseudonymize",
    "scrub_extras",
]
