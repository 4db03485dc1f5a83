"""Privacy core (pure Python + numpy, no pyflink): pseudonyms, PHI scrubbing, windowed
k-anonymity by optimal local recoding with cross-window anchors, audits, NCP metrics and
heart-rate derivation."""

from privacy.audit import (
    AttackReport,
    AuditViolation,
    auditor_violations,
    cross_window_attack,
    cross_window_attack_prefixes,
    published_labels,
)
from privacy.exhaustive import exhaustive_levels
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
    "AttackReport",
    "AuditViolation",
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
    "auditor_violations",
    "build_tree",
    "cross_window_attack",
    "cross_window_attack_prefixes",
    "derive_hr_bpm",
    "detect_r_peaks",
    "exhaustive_levels",
    "looks_like_phi",
    "ncp_table",
    "patient_table",
    "plan_levels",
    "pseudonymize",
    "published_labels",
    "scrub_extras",
    "suppression_token",
]
