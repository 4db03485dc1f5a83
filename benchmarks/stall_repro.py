"""Reproduction of issue 19's silent stall, with evidence when it stalls.

    .venv/bin/python -m benchmarks.stall_repro [--patients 60] [--seconds 60] [--watch 180]

Fresh local stack; the input topic pre-filled (frames without hr_bpm, some malformed messages); job 1
(cardio branch on, discarding InfluxDB endpoint) to the end, kill -9; job 2 (new consumer group and
checkpoint directory, same anomaly/model topics) into the local InfluxDB. While job 2 makes no progress
for 45 s, it takes a jstack of the job JVM, a py-spy dump of the job's Python processes and the Flink
REST view (backpressure, watermarks, vertex metrics) into --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.throughput import DiscardingInflux
from devstack.influx_queries import count_points_v1, create_database_v1
from devstack.processes import free_port
from devstack.simulator import SimConfig, generate_messages, produce
from devstack.stack import LocalStack
from testkit.flink_rest import rest_get, running_job_id, source_drained
from testkit.jobs import JobProcess, job_args, wait_until
from testkit.kafka_topics import last_offsets_of

START_MS = 1_763_812_800_000


def _group_pids(job: JobProcess) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,comm=", "-g", str(job.process.pid)], capture_output=True, text=True)
    return [int(line.split()[0]) for line in out.stdout.splitlines() if line.strip()]


def _java_pids(job: JobProcess) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,comm=", "-g", str(job.process.pid)], capture_output=True, text=True)
    return [int(line.split()[0]) for line in out.stdout.splitlines() if line.split()[1:] == ["java"]]


def evidence(job: JobProcess, port: int, out: Path, tag: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for pid in _java_pids(job):
        result = subprocess.run(["jstack", "-l", str(pid)], capture_output=True, text=True, timeout=60)
        (out / f"{tag}-jstack-{pid}.txt").write_text(result.stdout + result.stderr)
    for pid in _group_pids(job):
        if pid in _java_pids(job):
            continue
        result = subprocess.run([str(Path(sys.executable).parent / "py-spy"), "dump", "--pid", str(pid)],
                                capture_output=True, text=True, timeout=60)
        (out / f"{tag}-pyspy-{pid}.txt").write_text(result.stdout + result.stderr)
    jid = running_job_id(port)
    view: dict[str, Any] = {"jid": jid}
    if jid:
        detail = rest_get(port, f"/jobs/{jid}")
        view["vertices"] = {}
        for vertex in detail["vertices"]:
            vid = vertex["id"]
            entry: dict[str, Any] = {"status": vertex["status"], "metrics": vertex.get("metrics")}
            for path in ("backpressure", "watermarks"):
                try:
                    entry[path] = rest_get(port, f"/jobs/{jid}/vertices/{vid}/{path}")
                except OSError as error:
                    entry[path] = str(error)
            names = [m["id"] for m in rest_get(port, f"/jobs/{jid}/vertices/{vid}/metrics")]
            wanted = [n for n in names if any(s in n for s in (
                "pendingRecords", "busyTimeMsPerSecond", "backPressuredTimeMsPerSecond", "idleTimeMsPerSecond",
                "numRecordsIn", "numRecordsOut", "currentOffset", "devices_waiting", "currentInputWatermark",
                "buffers.outPoolUsage", "buffers.inPoolUsage"))]
            values = []
            for start in range(0, len(wanted), 20):
                query = ",".join(wanted[start:start + 20])
                values += rest_get(port, f"/jobs/{jid}/vertices/{vid}/metrics?get={query}")
            entry["selected_metrics"] = values
            view["vertices"][vertex["name"]] = entry
        view["checkpoints"] = rest_get(port, f"/jobs/{jid}/checkpoints").get("latest")
    (out / f"{tag}-rest.json").write_text(json.dumps(view, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--watch", type=float, default=180)
    parser.add_argument("--out", type=Path, default=Path(".run/stall"))
    parser.add_argument("--job2-args", default="", help="extra flags of the second job")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(out / "stack")
    stack.start(kafka=True, influx_v1=True, victoria_metrics=False, clean=True)
    discard = DiscardingInflux()
    jobs: list[JobProcess] = []
    try:
        config = SimConfig(patients=args.patients, duration_s=args.seconds, start_ms=START_MS, sites=4, seed=11,
                           hr_fraction=0.0, bad_fraction=0.001, end_of_stream=True, partitions=4)
        messages = list(generate_messages(config))
        assert produce(messages, stack.kafka_bootstrap, "ecg-raw").errors == 0
        last = last_offsets_of(stack.kafka_bootstrap, "ecg-raw")
        print(f"produced {len(messages)} messages, last offsets {last}", flush=True)

        port1 = free_port()
        job1 = JobProcess([*job_args(stack, out / "ck-1", "--influx-url", discard.url, "--kafka-group-id", "g1",
                                     "--web-ui-port", str(port1), "--checkpoint-interval-seconds", "5")],
                          out / "job-1.log")
        jobs.append(job1)
        wait_until(lambda: source_drained(port1, last), 900, "job 1 drains the topic", job=job1, poll=3)
        previous = -1
        while discard.points != previous:
            previous = discard.points
            time.sleep(10)
        print(f"job 1 done: {discard.points} points; kill -9", flush=True)
        job1.kill_hard()

        create_database_v1(stack.influx_v1_url, "stall2")
        port2 = free_port()
        job2 = JobProcess([*job_args(stack, out / "ck-2", "--influx-db", "stall2", "--kafka-group-id", "g2",
                                     "--web-ui-port", str(port2), "--checkpoint-interval-seconds", "5"),
                           *args.job2_args.split()], out / "job-2.log")
        jobs.append(job2)
        started = time.monotonic()
        last_change, points, dumps = time.monotonic(), 0, 0
        while time.monotonic() - started < args.watch:
            time.sleep(5)
            try:
                now = count_points_v1(stack.influx_v1_url, "stall2", "ecg_anonymized")
            except Exception:  # noqa: BLE001 - no database content yet
                now = 0
            if now != points:
                points, last_change = now, time.monotonic()
            print(f"[{time.monotonic() - started:5.0f}s] job 2 points {points} (job 1: {discard.points})", flush=True)
            if points >= discard.points > 0:
                print("job 2 complete: no stall", flush=True)
                return 0
            if points > 0 and time.monotonic() - last_change > 40 and dumps < 2:
                print("STALL: taking evidence", flush=True)
                evidence(job2, port2, out, f"stall{dumps}")
                dumps += 1
                last_change = time.monotonic()  # the second dump 40 s after the first
        print(f"job 2 ended the watch at {points} of {discard.points} points", flush=True)
        return 1
    finally:
        for job in jobs:
            job.stop()
        discard.close()
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
