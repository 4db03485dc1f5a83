"""Naive per-record pure-Python version of the core's bottom-up rule BEFORE issue 8 (a baseline
only: the "before" of benchmarks/utility_benchmark.py, the speed baseline of
benchmarks/privacy_core_benchmark.py, and what tests/privacy/test_privacy_kanonymity.py compares the core with).

The old rule: generalize everybody to level 1, publish every class of >= k patients, move the rest
up one level and group them only among themselves, ...; whoever is left after level 8 is suppressed
(no carry-over, no HR derivation here): one Python call per value and per sample, dicts for grouping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hierarchy.loader import Hierarchy, Rule
from privacy.model import Frame


def _gen(rule: Rule, value: object) -> str:
    if rule.kind == "star":
        return "*"
    if rule.kind == "keep":
        return str(value)
    if rule.kind == "band":
        w = rule.width
        lo = int(math.floor(float(value) / w) * w)  # type: ignore[arg-type]
        return str(lo) if w == 1 else f"{lo}-{lo + w - 1}"
    s = str(value)
    n = rule.width
    return s[:n] + "*" * max(0, len(s) - n)


def _decimals(p: float) -> int:
    s = repr(p)
    return len(s.split(".")[1]) if "." in s and "e" not in s else 0


def naive_levels(hierarchy: Hierarchy, qi_rows: dict[str, dict[str, object]], k: int) -> dict[str, int]:
    """pid -> level 1..8, or 9 when no class of >= k patients was found."""
    qis = hierarchy.quasi_identifiers
    remaining = sorted(qi_rows)
    levels: dict[str, int] = {}
    for level in range(1, 9):
        groups: dict[tuple[str, ...], list[str]] = {}
        for pid in remaining:
            key = tuple(_gen(hierarchy.rule(a, level), qi_rows[pid][a]) for a in qis)
            groups.setdefault(key, []).append(pid)
        nxt = []
        for members in groups.values():
            if len(members) >= k:
                for pid in members:
                    levels[pid] = level
            else:
                nxt.extend(members)
        remaining = sorted(nxt)
    for pid in remaining:
        levels[pid] = 9
    return levels


def naive_anonymize(frames: Sequence[Frame], hierarchy: Hierarchy, k: int) -> tuple[dict[str, int], list[list[float]]]:
    """Return (pid -> level, published sample lists per frame in input order)."""
    first: dict[str, Frame] = {}
    for f in frames:
        if f.pid not in first or f.ts_ms < first[f.pid].ts_ms:
            first[f.pid] = f
    qi_rows = {pid: dict(f.qi) for pid, f in first.items()}
    levels = naive_levels(hierarchy, qi_rows, k)
    out: list[list[float] | None] = []
    total = 0.0
    count = 0
    for f in frames:
        lv = levels[f.pid]
        if lv == 9:
            out.append(None)
            continue
        p = hierarchy.ecg_precision(lv)
        d = _decimals(p) + 1
        vals = []
        for v in f.samples.tolist():  # per-sample Python work: what the core avoids
            r = round(round(v / p) * p, d) if p > 0 else v
            vals.append(r)
            total += r
            count += 1
        out.append(vals)
    mean = total / count if count else 0.0
    return levels, [o if o is not None else [mean] * f.n_samples for o, f in zip(out, frames, strict=True)]
