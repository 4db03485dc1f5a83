"""The InfluxDB sink with class-whole write requests vs the previous fixed-size slicing, side by side.

    .venv/bin/python -m benchmarks.sink_benchmark [--patients 60] [--seconds 120] [--rounds 3]

Same anonymized windows (the privacy core on simulator frames), same local influxd (v1 /write), same
writer: before = each window's lines in consecutive slices of INFLUX_BATCH_POINTS (a class could be cut
anywhere); after = connectors.influxdb.class_requests (whole classes per request, a class larger than
a request cut between patients into parts of >= k). Rounds alternate the two so that drift of the
shared machine hits both; each round writes into a fresh database. Prints points/s per round, the
medians and their ratio, and the number of requests.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.throughput import published_windows
from connectors.influxdb import InfluxV1Writer, class_requests, window_lines
from devstack.influx_queries import count_points_v1, create_database_v1
from devstack.simulator import SimConfig, generate_messages
from devstack.stack import LocalStack

MEASUREMENT = "ecg_anonymized"
START_MS = 1_763_812_800_000


def published_frames_per_window(patients: int, seconds: int, sites: int, k: int) -> list[list[Any]]:
    """The published frames of every (ward, window), as the job would write them."""
    messages = generate_messages(SimConfig(patients=patients, duration_s=seconds, start_ms=START_MS, sites=sites,
                                           seed=13))
    return published_windows(messages, k)


def sliced(frames: list[Any], batch: int, _k: int) -> list[list[str]]:
    """Before: a window's lines in consecutive fixed-size slices."""
    lines = window_lines(frames, MEASUREMENT)
    return [lines[start : start + batch] for start in range(0, len(lines), batch)]


def class_whole(frames: list[Any], batch: int, k: int) -> list[list[str]]:
    return list(class_requests(frames, MEASUREMENT, batch, k))


def write_all(url: str, windows: list[list[Any]], requests_of: Any, batch: int, k: int) -> tuple[float, int, int]:
    """(seconds, points, requests) for writing every window with `requests_of`, into a fresh database."""
    db = "sink_" + uuid.uuid4().hex[:8]
    create_database_v1(url, db)
    writer = InfluxV1Writer(url, db)
    requests = points = 0
    started = time.perf_counter()
    for frames in windows:  # one window at a time, as the sink does
        for request in requests_of(frames, batch, k):
            writer.write_lines(request)
            requests += 1
            points += len(request)
    seconds = time.perf_counter() - started
    assert count_points_v1(url, db, MEASUREMENT) == points
    return seconds, points, requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--batch-points", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    windows = published_frames_per_window(args.patients, args.seconds, args.sites, args.k)
    print(f"{len(windows)} windows, {sum(len(w) for w in windows)} published frames, k={args.k}, "
          f"INFLUX_BATCH_POINTS={args.batch_points}")
    rates: dict[str, list[float]] = {"before (slices)": [], "after (whole classes)": []}
    requests: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="sink-bench-") as workdir:
        stack = LocalStack(Path(workdir) / "stack")
        stack.start(kafka=False, influx_v1=True, victoria_metrics=False)
        try:
            for round_number in range(args.rounds):
                for name, requests_of in (("before (slices)", sliced), ("after (whole classes)", class_whole)):
                    seconds, points, count = write_all(stack.influx_v1_url, windows, requests_of, args.batch_points,
                                                       args.k)
                    rates[name].append(points / seconds)
                    requests[name] = count
                    print(f"round {round_number + 1}  {name:22} {points:>9} points {count:>5} requests "
                          f"{seconds:6.2f} s {points / seconds:>10,.0f} points/s")
        finally:
            stack.stop()
    before, after = (statistics.median(rates[name]) for name in rates)
    print(f"median points/s: before {before:,.0f}, after {after:,.0f}; after/before = {after / before:.2f}; "
          f"requests {requests['before (slices)']} vs {requests['after (whole classes)']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
