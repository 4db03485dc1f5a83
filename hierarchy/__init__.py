"""Generalization hierarchies (pure Python + numpy)."""

from hierarchy.loader import (
    DEFAULT_HIERARCHY_PATH,
    ECG_COLUMN,
    LEVELS,
    SUPPRESSED_LEVEL,
    Hierarchy,
    HierarchyError,
    Rule,
    load_hierarchy,
)

__all__ = [
    "DEFAULT_HIERARCHY_PATH",
    "ECG_COLUMN",
    "LEVELS",
    "SUPPRESSED_LEVEL",
    "Hierarchy",
    "HierarchyError",
    "Rule",
    "load_hierarchy",
]
