"""What a quiet Kafka partition costs in latency: devices streaming in real time, three shapes, one run.

    .venv/bin/python -m benchmarks.event_time_latency [--seconds 60] [--idle-timeout 10]

Shapes (12 devices, 1 s frames at 250 Hz, real time, 4-partition topic, one job per shape):
  all partitions     devices spread over the 4 partitions
  2 of 4 partitions  the devices' keys land on partitions 0 and 1 only; 2 and 3 never get data
  one goes quiet     as "all partitions", but the devices of partition 3 stop after a third of the run

For every 5 s window: latency = the wall-clock moment its last point is queryable in InfluxDB minus the
window's end (the simulator stamps frames with the wall clock, so event time ~ wall time). Printed:
p50 / p99 / max over the windows, and the first window's latency (what a job start or a quiet partition
adds once: the idle timeout, IDLE_PARTITION_TIMEOUT_SECONDS).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.influx_queries import create_database_v1, query_v1
from devstack.kafka_admin import create_topics
from devstack.simulator import SimConfig, SimMessage, generate_messages, produce
from devstack.stack import LocalStack
from testkit.jobs import JobProcess, job_args, wait_until

WINDOW_MS = 5000


def routed(messages: list[SimMessage], shape: str, seconds: int) -> list[SimMessage]:
    out = []
    devices = sorted({m.key for m in messages if m.key})
    quiet_after = messages[0].timestamp_ms + seconds * 1000 // 3
    for message in messages:
        index = devices.index(message.key) if message.key else 0
        partition = index % 2 if shape == "2 of 4 partitions" else index % 4
        if shape == "one goes quiet" and partition == 3 and message.timestamp_ms >= quiet_after:
            continue
        out.append(dataclasses.replace(message, partition=partition))
    return out


def points_per_window(messages: list[SimMessage], samples_per_frame: int) -> Counter[int]:
    counts: Counter[int] = Counter()
    for message in messages:
        counts[message.timestamp_ms - message.timestamp_ms % WINDOW_MS] += samples_per_frame
    return counts


def window_point_counts(influx_url: str, db: str, since_ms: int) -> dict[int, int]:
    """Points of ecg_anonymized per 5 s window (start in ms) from `since_ms` on."""
    rows = query_v1(influx_url, f'SELECT count("ecg_mv") FROM "ecg_anonymized" WHERE time >= {since_ms}ms '
                                'GROUP BY time(5s) fill(none)', db)
    return {int(row["time"]) // 1_000_000: int(row["count"]) for row in rows}


def poll_window_completion(influx_url: str, db: str, expected: Counter[int], until_complete: set[int],
                           deadline: float, on_poll: Callable[[], None] | None = None,
                           first_point_at: dict[int, float] | None = None) -> dict[int, float]:
    """Wall-clock time at which each window first had all its expected points, polled every 0.2 s until
    the windows `until_complete` are all there or `deadline` (time.time()). Only windows not yet complete
    are queried, so a long run does not count its whole history at every poll. `first_point_at`, if
    given, gets the time each window's first points were seen (its anonymization had begun writing)."""
    complete_at: dict[int, float] = {}
    while time.time() < deadline and not until_complete <= set(complete_at):
        since = min((w for w in expected if w not in complete_at), default=max(expected))
        counts = window_point_counts(influx_url, db, since)
        now = time.time()
        for window, count in counts.items():
            if first_point_at is not None and count:
                first_point_at.setdefault(window, now)
            if window not in complete_at and count >= expected.get(window, 1 << 60):
                complete_at[window] = now
        if on_poll is not None:
            on_poll()
        time.sleep(0.2)
    return complete_at


def latency_summary(complete_at: dict[int, float], closable: set[int]) -> dict[str, Any]:
    """Window end -> last point queryable (s) over the windows the data itself closes: p50 / p99 / max and
    the first window's (what a job start or a quiet partition adds once)."""
    latencies = {w: complete_at[w] - (w + WINDOW_MS) / 1000 for w in sorted(complete_at) if w in closable}
    values = sorted(latencies.values())
    if not values:
        return {"windows": 0, "missing": len(closable)}
    return {
        "windows": len(values), "missing": len(closable - set(complete_at)),
        "first": latencies[min(latencies)], "p50": statistics.median(values),
        "p99": values[min(len(values) - 1, round(0.99 * (len(values) - 1)))], "max": values[-1],
    }


def measure(stack: LocalStack, workdir: Path, shape: str, seconds: int, idle_timeout: float) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    topic, dlq, db = f"lat-raw-{run}", f"lat-dlq-{run}", f"lat_{run}"
    create_topics(stack.kafka_bootstrap, {topic: 4, dlq: 1})
    create_database_v1(stack.influx_v1_url, db)
    job = JobProcess(job_args(stack, workdir / f"checkpoints-{run}", "--influx-db", db, "--kafka-input-topic", topic,
                              "--kafka-dlq-topic", dlq, "--k-anonymity", "3", "--cardio-branch", "false",
                              "--idle-partition-timeout-seconds", str(idle_timeout)),
                     workdir / f"job-{run}.log")
    try:
        wait_until(lambda: list((workdir / f"checkpoints-{run}").glob("*/chk-*/_metadata")), 120, "job running",
                   job=job)
        start_ms = int(time.time() * 1000) + 2000
        start_ms -= start_ms % WINDOW_MS
        config = SimConfig(patients=12, duration_s=seconds, start_ms=start_ms, sites=2, fs=250.0, seed=51)
        messages = routed(list(generate_messages(config)), shape, seconds)
        expected = points_per_window(messages, config.samples_per_frame)
        producer = threading.Thread(target=produce, args=(messages, stack.kafka_bootstrap, topic),
                                    kwargs={"realtime_frame_ms": config.frame_ms}, daemon=True)
        producer.start()
        # Windows closed by the data itself: up to the last frame minus the out-of-orderness bound.
        closable = {w for w in expected if w + WINDOW_MS <= max(expected) - 2000}
        complete_at = poll_window_completion(stack.influx_v1_url, db, expected, closable, time.time() + seconds + 60)
        producer.join(timeout=10)
        return {"shape": shape, **latency_summary(complete_at, closable)}
    finally:
        job.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--idle-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="latency-") as tmp:
        workdir = Path(tmp)
        stack = LocalStack(workdir / "stack")
        stack.start(victoria_metrics=False)
        try:
            for shape in ("all partitions", "2 of 4 partitions", "one goes quiet"):
                results.append(measure(stack, workdir, shape, args.seconds, args.idle_timeout))
                print(results[-1], flush=True)
        finally:
            stack.stop()
    print(f"\nwindow end -> queryable, seconds (IDLE_PARTITION_TIMEOUT_SECONDS={args.idle_timeout:g}, "
          f"out-of-orderness 2 s, 12 devices, {args.seconds} s real time)")
    print(f"{'shape':20} {'windows':>7} {'first':>6} {'p50':>6} {'p99':>6} {'max':>6} {'missing':>7}")
    for r in results:
        if r["windows"]:
            print(f"{r['shape']:20} {r['windows']:>7} {r['first']:6.1f} {r['p50']:6.1f} {r['p99']:6.1f} "
                  f"{r['max']:6.1f} {r['missing']:>7}")
        else:
            print(f"{r['shape']:20} {0:>7} {'-':>6} {'-':>6} {'-':>6} {'-':>6} {r['missing']:>7}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
