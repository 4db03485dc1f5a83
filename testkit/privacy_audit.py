"""Checks on published output, as a privacy officer or an attacker would run them (pure).

* ``auditor_violations``: group published points by (window of their timestamp, level, labels),
  levels 1..8, and report every group with fewer than k distinct pseudonyms.
* ``cross_window_attack``: an attacker knows a patient's true QIs and keeps every pseudonym whose
  EVERY published label (all windows, levels 1..8) contains them; report the patients whose own
  pseudonym was published with a label and whose candidate set is smaller than k.
* ``cross_window_attack_prefixes``: the same attack at every window boundary (an attacker reading
  mid-stream remembers pseudonyms, so every prefix in time must hold too).

Inputs are plain tuples so the end-to-end tests can feed what they read back from InfluxDB.
Labels are tuples in ``hierarchy.quasi_identifiers`` order, or mappings attribute -> label.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from devstack.simulator import SimMessage
from hierarchy.loader import SUPPRESSED_LEVEL, Hierarchy
from privacy.model import PublishedFrame
from privacy.pseudonym import pseudonymize

__all__ = [
    "AttackReport",
    "AuditViolation",
    "PublishedLabel",
    "auditor_violations",
    "cross_window_attack",
    "cross_window_attack_prefixes",
    "published_labels",
]

Labels = tuple[str, ...]
# (pid, ts_ms, level, labels)
PublishedLabel = tuple[str, int, int, Labels | Mapping[str, str]]


@dataclass(frozen=True)
class AuditViolation:
    window_start_ms: int
    level: int
    labels: Labels
    pids: frozenset[str]


@dataclass(frozen=True)
class AttackReport:
    candidates: dict[str, int]  # target pid -> number of pseudonyms consistent with its true QIs
    below_k: dict[str, int]  # the published targets with fewer than k candidates

    @property
    def min_candidates(self) -> int:
        """Smallest candidate count over the targets whose pid was published with a label (0 if none)."""
        return min(self.published_candidates.values(), default=0)

    @property
    def published_candidates(self) -> dict[str, int]:
        return {p: c for p, c in self.candidates.items() if c > 0}


def _labels(hierarchy: Hierarchy, labels: Labels | Mapping[str, str]) -> Labels:
    if isinstance(labels, Mapping):
        return tuple(str(labels[a]) for a in hierarchy.quasi_identifiers)
    return tuple(str(v) for v in labels)


def published_labels(frames: Iterable[PublishedFrame]) -> list[tuple[str, int, int, dict[str, str]]]:
    """``(pid, ts_ms, level, labels)`` of published frames, the input of the checks below."""
    return [(pf.pid, pf.ts_ms, pf.level, pf.qi) for pf in frames]


def auditor_violations(
    hierarchy: Hierarchy, points: Iterable[PublishedLabel], window_ms: int, k: int
) -> list[AuditViolation]:
    """Groups (window of the timestamp, level 1..8, labels) with fewer than ``k`` distinct pids.
    Windows are aligned at the epoch (as Flink's tumbling windows without offset)."""
    groups: dict[tuple[int, int, Labels], set[str]] = defaultdict(set)
    for pid, ts_ms, level, labels in points:
        if 1 <= int(level) < SUPPRESSED_LEVEL:
            start = int(ts_ms) - int(ts_ms) % window_ms
            groups[(start, int(level), _labels(hierarchy, labels))].add(pid)
    return [
        AuditViolation(start, level, labels, frozenset(pids))
        for (start, level, labels), pids in sorted(groups.items())
        if len(pids) < k
    ]


def _path(hierarchy: Hierarchy, qi: Mapping[str, object]) -> set[tuple[int, Labels]]:
    """Every (level, labels) at levels 1..8 that contains these raw QIs."""
    out: set[tuple[int, Labels]] = set()
    for level in range(1, SUPPRESSED_LEVEL):
        labels = tuple(
            str(hierarchy.generalize(a, np.asarray([qi.get(a)], dtype=object), level)[0])
            for a in hierarchy.quasi_identifiers
        )
        out.add((level, labels))
    return out


def cross_window_attack(
    hierarchy: Hierarchy,
    published: Mapping[str, Iterable[tuple[int, Labels | Mapping[str, str]]]],
    true_qi: Mapping[str, Mapping[str, object]],
    k: int,
) -> AttackReport:
    """``published``: pid -> its published (level, labels) (levels 9 and tokens are ignored: they
    carry no label); ``true_qi``: target pid -> the patient's true raw QIs. A target's candidates are
    the published pids all of whose labels contain its QIs (0 if its own pid was never published
    with a label: nothing about it can be narrowed down)."""
    label_sets: dict[str, frozenset[tuple[int, Labels]]] = {}
    for pid, items in published.items():
        labs = frozenset((int(lv), _labels(hierarchy, lab)) for lv, lab in items if 1 <= int(lv) < SUPPRESSED_LEVEL)
        if labs:
            label_sets[pid] = labs
    candidates: dict[str, int] = {}
    below: dict[str, int] = {}
    for target, qi in true_qi.items():
        if target not in label_sets:
            candidates[target] = 0
            continue
        path = _path(hierarchy, qi)
        count = sum(1 for labs in label_sets.values() if labs <= path)
        candidates[target] = count
        if count < k:
            below[target] = count
    return AttackReport(candidates, below)


def cross_window_attack_prefixes(
    hierarchy: Hierarchy,
    points: Iterable[PublishedLabel],
    true_qi: Mapping[str, Mapping[str, object]],
    k: int,
    window_ms: int,
) -> tuple[int, list[tuple[int, str, int]]]:
    """The attack after every window (by the points' timestamps): returns the minimum candidate
    count over all prefixes and published targets (0 if nothing was published) and every
    ``(window_start_ms, target pid, candidates)`` below k."""
    by_window: dict[int, list[tuple[str, int, Labels]]] = defaultdict(list)
    for pid, ts_ms, level, labels in points:
        if 1 <= int(level) < SUPPRESSED_LEVEL:
            by_window[int(ts_ms) - int(ts_ms) % window_ms].append((pid, int(level), _labels(hierarchy, labels)))
    paths = {t: _path(hierarchy, qi) for t, qi in true_qi.items()}
    seen: dict[str, set[tuple[int, Labels]]] = defaultdict(set)
    worst: int | None = None
    violations: list[tuple[int, str, int]] = []
    for start in sorted(by_window):
        for pid, level, labels in by_window[start]:
            seen[pid].add((level, labels))
        for target, path in paths.items():
            if target not in seen:
                continue
            count = sum(1 for labs in seen.values() if labs <= path)
            worst = count if worst is None else min(worst, count)
            if count < k:
                violations.append((start, target, count))
    return (worst or 0), violations


def true_quasi_identifiers(messages: Iterable[SimMessage], secret: str) -> dict[str, dict[str, object]]:
    """pid -> the patient's true age, sex and zip (the attacker's background knowledge), from the simulator's
    frame messages."""
    known: dict[str, dict[str, object]] = {}
    for message in messages:
        if message.kind == "frame":
            frame = json.loads(message.value)
            pid = pseudonymize(frame["patient_id"], secret.encode(), scope=frame["site"])
            known.setdefault(pid, {"age": frame["age"], "sex": frame["sex"], "zip": frame["zip"]})
    return known
