"""Privacy core (pure Python + numpy, no pyflink): pseudonyms, PHI scrubbing, windowed
k-anonymity by optimal local recoding with cross-window anchors, NCP metrics and heart-rate
derivation. (The audits and the exhaustive optimum that check it are in testkit/.)"""

from privacy.heart_rate import derive_hr_bpm, detect_r_peaks
from privacy.kanonymity import (
    AnonymizationConfig,
    KeyState,
    WindowResult,
    anonymize_window,
    assign_levels,
    patient_table,
    suppression_token,
)
from privacy.metrics import WindowMetrics, attribute_ncp, ncp_table
from privacy.model import Frame, PatientRow, PublishedFrame
from privacy.phi import looks_like_phi, scrub_extras
from privacy.planner import WindowTree, build_tree, plan_levels
from privacy.pseudonym import pseudonymize

__all__ = [
    "AnonymizationConfig",
    "Frame",
    "KeyState",
    "PatientRow",
    "PublishedFrame",
    "WindowMetrics",
    "WindowResult",
    "WindowTree",
    "anonymize_window",
    "assign_levels",
    "attribute_ncp",
    "build_tree",
    "derive_hr_bpm",
    "detect_r_peaks",
    "looks_like_phi",
    "ncp_table",
    "patient_table",
    "plan_levels",
    "pseudonymize",
    "scrub_extras",
    "suppression_token",
]
