"""What a reader of the published output sees at a moment, as the tests and benchmarks check it on
InfluxDB while a job runs: every window class below k, and a sampler that tells a class published below k
from a query that raced a write request."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def visible_classes_below_k(url: str, db: str, k: int, window_seconds: int = 5,
                            measurement: str = "ecg_anonymized") -> list[str]:
    """What a privacy officer checks on the output, at this moment: the published points (levels 1..8)
    grouped by the window of their timestamps and by class (level + generalized labels); every group
    with fewer than k distinct pseudonyms, as text (empty = fine)."""
    from devstack.influx_queries import query_v1

    rows = query_v1(url, f'SELECT count("ecg_mv") FROM "{measurement}" WHERE "level" != \'9\' AND time > 0 '
                         f'GROUP BY time({window_seconds}s), "level", "age", "sex", "zip", "pid" fill(none)', db)
    groups: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    for row in rows:
        groups[(row["time"], row["level"], row["age"], row["sex"], row["zip"])].add(row["pid"])
    return [f"window {key[0]} level {key[1]} {key[2:]}: {len(pids)} pseudonyms"
            for key, pids in sorted(groups.items()) if len(pids) < k]


@dataclass
class BelowKSampler:
    """Samples ``visible_classes_below_k`` while a test disturbs the job, and tells a class the job published
    below k from a query that raced a write request.

    InfluxDB applies a request series by series, with no read isolation: a query that runs meanwhile can
    see part of a class for the milliseconds the request takes (docs/privacy.md section 6; measured with
    single whole-class requests and no job at all, ``benchmarks/influx_read_isolation.py``). So every
    sighting is queried again ``recheck_s`` later: still there = ``persistent`` (a class published below k:
    a defect), gone = ``raced`` (reported, not a failure). What this cannot tell apart from a race is a
    class split over requests written within ``recheck_s``; that the sink never does is checked on the
    requests themselves (``connectors.influxdb.class_batches`` tests, ``test_http_output_job.py``)."""

    url: str
    db: str
    k: int
    recheck_s: float = 0.5

    def __post_init__(self) -> None:
        self.samples = 0
        self.persistent: list[str] = []
        self.raced: list[str] = []

    def sample(self) -> None:
        self.samples += 1
        seen = visible_classes_below_k(self.url, self.db, self.k)
        if not seen:
            return
        time.sleep(self.recheck_s)
        again = set(visible_classes_below_k(self.url, self.db, self.k))
        self.persistent += [found for found in seen if found in again]
        self.raced += [found for found in seen if found not in again]

    def sample_for(self, seconds: float, every_s: float = 1.0, also: Callable[[], object] | None = None) -> None:
        """Sample for `seconds`; `also`, if given, is called with every sample (another watch on the job)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sample()
            if also is not None:
                also()
            time.sleep(max(0.0, min(every_s, end - time.monotonic())))
