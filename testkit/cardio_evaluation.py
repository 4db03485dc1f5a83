"""Beat-by-beat comparison of detections against a reference (50 ms tolerance, one-to-one)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TOLERANCE_MS = 50.0


@dataclass(frozen=True)
class Match:
    true_positives: int
    false_negatives: int
    false_positives: int
    errors_ms: np.ndarray  # detection - reference, per matched pair

    @property
    def sensitivity(self) -> float:
        total = self.true_positives + self.false_negatives
        return self.true_positives / total if total else math.nan

    @property
    def ppv(self) -> float:
        total = self.true_positives + self.false_positives
        return self.true_positives / total if total else math.nan


def match_pairs(reference_ms: np.ndarray, detected_ms: np.ndarray, tolerance_ms: float = TOLERANCE_MS) -> np.ndarray:
    """Index pairs (i_reference, j_detected) matched one-to-one within the tolerance: pairs are taken
    in increasing order of distance, each beat at most once (a greedy optimal-by-distance matching,
    exact for beats spaced more than twice the tolerance)."""
    ref = np.sort(np.asarray(reference_ms, dtype=np.float64))
    det = np.sort(np.asarray(detected_ms, dtype=np.float64))
    if ref.size == 0 or det.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    candidates: list[tuple[float, int, int]] = []
    lo = np.searchsorted(det, ref - tolerance_ms, side="left")
    hi = np.searchsorted(det, ref + tolerance_ms, side="right")
    for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
        for j in range(a, b):
            candidates.append((abs(det[j] - ref[i]), i, j))
    candidates.sort()
    used_ref: set[int] = set()
    used_det: set[int] = set()
    pairs = []
    for _, i, j in candidates:
        if i not in used_ref and j not in used_det:
            used_ref.add(i)
            used_det.add(j)
            pairs.append((i, j))
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)


def compare(reference_ms: np.ndarray, detected_ms: np.ndarray, tolerance_ms: float = TOLERANCE_MS) -> Match:
    ref = np.sort(np.asarray(reference_ms, dtype=np.float64))
    det = np.sort(np.asarray(detected_ms, dtype=np.float64))
    pairs = match_pairs(ref, det, tolerance_ms)
    tp = len(pairs)
    errors = det[pairs[:, 1]] - ref[pairs[:, 0]] if tp else np.zeros(0)
    return Match(tp, ref.size - tp, det.size - tp, errors)


@dataclass(frozen=True)
class Agreement:
    """A detector against the consensus of two references (beats both place within the tolerance).

    Beats only one reference has are *disputed*: a detection on a disputed beat is neither a hit nor
    a false positive; sensitivity = hits / consensus beats, PPV = hits / (detections - disputed ones).
    """

    consensus: int
    disputed: int
    hits: int
    misses: int
    extra: int  # detections near no reference beat at all
    on_disputed: int

    @property
    def sensitivity(self) -> float:
        return self.hits / self.consensus if self.consensus else math.nan

    @property
    def ppv(self) -> float:
        total = self.hits + self.extra
        return self.hits / total if total else math.nan


def consensus(a_ms: np.ndarray, b_ms: np.ndarray, tolerance_ms: float = TOLERANCE_MS) -> tuple[np.ndarray, np.ndarray]:
    """(consensus beat times = midpoints of matched pairs, disputed beat times = unmatched of either)."""
    a = np.sort(np.asarray(a_ms, dtype=np.float64))
    b = np.sort(np.asarray(b_ms, dtype=np.float64))
    pairs = match_pairs(a, b, tolerance_ms)
    agreed = (a[pairs[:, 0]] + b[pairs[:, 1]]) / 2 if len(pairs) else np.zeros(0)
    disputed = np.sort(np.concatenate((np.delete(a, pairs[:, 0]), np.delete(b, pairs[:, 1]))))
    return agreed, disputed


def agreement(
    detected_ms: np.ndarray, reference_a_ms: np.ndarray, reference_b_ms: np.ndarray, tolerance_ms: float = TOLERANCE_MS
) -> Agreement:
    agreed, disputed = consensus(reference_a_ms, reference_b_ms, tolerance_ms)
    det = np.sort(np.asarray(detected_ms, dtype=np.float64))
    pairs = match_pairs(agreed, det, tolerance_ms)
    rest = np.delete(det, pairs[:, 1])
    on_disputed = len(match_pairs(disputed, rest, tolerance_ms))
    hits = len(pairs)
    return Agreement(
        consensus=agreed.size,
        disputed=disputed.size,
        hits=hits,
        misses=agreed.size - hits,
        extra=rest.size - on_disputed,
        on_disputed=on_disputed,
    )
