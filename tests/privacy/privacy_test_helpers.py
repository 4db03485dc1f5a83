"""Small builders for privacy-core tests."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from privacy.kanonymity import WindowResult
from privacy.model import Frame
from privacy.pseudonym import pseudonymize

SECRET = b"test-secret"
T0 = 1_763_812_800_000


def pid_of(raw_id: str) -> str:
    return pseudonymize(raw_id, SECRET)


def frame(
    raw_id: str,
    age: int,
    sex: str,
    zip_code: str,
    samples: list[float] | np.ndarray,
    ts_ms: int = T0,
    hr: float = math.nan,
    fs: float = 250.0,
    sensitive: str | None = None,
    lead: str = "II",
) -> Frame:
    return Frame(
        pid=pid_of(raw_id),
        ts_ms=ts_ms,
        fs=fs,
        samples=np.asarray(samples, dtype=np.float64),
        qi={"age": age, "sex": sex, "zip": zip_code},
        lead=lead,
        hr_bpm=hr,
        sensitive=sensitive,
    )


def classes(result: WindowResult) -> dict[tuple[int, tuple[str, ...]], set[str]]:
    """(level, generalized QIs) -> distinct pids, for published levels 1..8."""
    out: dict[tuple[int, tuple[str, ...]], set[str]] = defaultdict(set)
    for pf in result.published:
        if pf.level < 9:
            out[(pf.level, tuple(pf.qi[a] for a in sorted(pf.qi)))].add(pf.pid)
    return out


def by_pid(result: WindowResult) -> dict[str, list]:
    out: dict[str, list] = defaultdict(list)
    for pf in result.published:
        out[pf.pid].append(pf)
    return out


# The default hierarchy before issue 8: level 8 still splits ages into 0-79 and 80+, so a window
# can hold patients that no class can take. Tests of suppression mechanics use it; with the default
# hierarchy (one root at level 8) a fresh window suppresses only when it has fewer than k patients.
SPLIT_ROOT_HIERARCHY = Path(__file__).resolve().parents[2] / "benchmarks" / "hierarchy_before_issue8.csv"
