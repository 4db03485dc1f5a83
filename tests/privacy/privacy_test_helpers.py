"""Small builders for privacy-core tests."""

from __future__ import annotations

import math
from collections import defaultdict

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
