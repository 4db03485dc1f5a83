"""What Kafka transactions cost: the same workloads with KAFKA_DELIVERY=at-least-once and exactly-once, in one
invocation, on the same broker and influxd, each run with fresh output topics and database.

    .venv/bin/python -m benchmarks.delivery_cost [--patients 100] [--duration 60] [--devices 16]
        [--live-seconds 60] [--checkpoint-interval 5] [--keep]

Both runs use the job's defaults (checkpoint interval 5 s, the cardio branch on, so all three Kafka sinks
-- dead letters, anomalies, model updates -- are transactional in the exactly-once run) except k=3.

1. Throughput (backlog). `--patients` x `--duration` s of MIT-BIH frames (2 % malformed) pre-produced once into
   one 4-partition topic; each run reads it from the start. Clock: from the first anonymized point
   queryable in InfluxDB to the last expected point (testkit.reference.expected_output); JVM and worker
   start-up are not counted. Printed: points/s and frames/s (valid frames of the backlog / seconds).
2. Latency (live). `--devices` synthetic devices stream in real time for `--live-seconds` s (frames stamped
   with the wall clock, each sent when its last sample is due), every device with a 7 s asystole every
   12 s (one anomaly event each), 5 % malformed messages; each run its own input topic. A read_committed
   reader (a kafka-python consumer polling every 100 ms from the start) notes the wall-clock moment it
   first sees each record. Latency of an anomaly = that moment - the event's `ts` (the end of its
   detection window, in event time = the wall clock at which the anomaly became knowable; the frame
   holding it was sent at most 1 s later). Latency of a dead letter = that moment - the producer's send
   time of the malformed message (taken in the producer's send callback, by partition and offset).
   Every anomaly of the pure reference model (testkit.reference.expected_branch) and every dead letter
   must be seen once, otherwise the run fails.

Printed per delivery: points/s, frames/s, anomaly latency p50 / p95 / max (and count), dead-letter latency
p50 / p95 / max, and the ratios exactly-once / at-least-once. Takes ~6 minutes on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.checkpoints import latest_checkpoint
from devstack.influx_queries import count_points_v1, create_database_v1
from devstack.kafka_admin import create_topics
from devstack.simulator import Episode, SimConfig, SimMessage, generate_messages, make_producer, produce
from devstack.stack import LocalStack
from testkit.chaos import delivery_args
from testkit.jobs import JobProcess, branch_args, job_args, wait_until
from testkit.reference import expected_branch, expected_output

DELIVERIES = ("at-least-once", "exactly-once")
K = 3
FRAME_MS = 1000


@dataclass
class DeliveryFigures:
    delivery: str
    points: int = 0
    frames: int = 0
    seconds: float = 0.0
    anomaly_latency_s: list[float] = field(default_factory=list)
    anomalies_expected: int = 0
    anomalies_seen_twice: int = 0
    dlq_latency_s: list[float] = field(default_factory=list)
    dlq_expected: int = 0
    dlq_seen_twice: int = 0
    producer_max_lag_s: float = 0.0

    @property
    def points_per_s(self) -> float:
        return self.points / self.seconds if self.seconds else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def complete(self) -> bool:
        return (len(self.anomaly_latency_s) == self.anomalies_expected > 0
                and len(self.dlq_latency_s) == self.dlq_expected > 0)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def _topics(stack: LocalStack, prefix: str, raw_partitions: int | None) -> dict[str, str]:
    run_id = uuid.uuid4().hex[:8]
    names = {"dlq": f"{prefix}-dlq-{run_id}", "anomalies": f"{prefix}-anomalies-{run_id}",
             "models": f"{prefix}-models-{run_id}"}
    if raw_partitions:
        names["raw"] = f"{prefix}-raw-{run_id}"
    create_topics(stack.kafka_bootstrap, {topic: raw_partitions or 1 if name == "raw" else 1
                                          for name, topic in names.items()})
    names["db"] = f"{prefix.replace('-', '_')}_{run_id}"
    create_database_v1(stack.influx_v1_url, names["db"])
    names["prefix"] = f"{prefix}-{run_id}"
    return names


def _args(stack: LocalStack, workdir: Path, names: dict[str, str], raw_topic: str, delivery: str,
          interval: float) -> list[str]:
    return job_args(stack, workdir / f"checkpoints-{names['prefix']}", "--influx-db", names["db"],
                    "--kafka-input-topic", raw_topic, "--kafka-dlq-topic", names["dlq"], "--k-anonymity", str(K),
                    *branch_args(names["anomalies"], names["models"]), "--checkpoint-interval-seconds", str(interval),
                    *delivery_args(delivery, names["prefix"]))


def throughput_run(stack: LocalStack, workdir: Path, raw_topic: str, points: int, frames: int, delivery: str,
                   interval: float, figures: DeliveryFigures) -> None:
    names = _topics(stack, f"cost-tp-{delivery}", None)
    url, db = stack.influx_v1_url, names["db"]
    job = JobProcess(_args(stack, workdir, names, raw_topic, delivery, interval),
                     workdir / f"throughput-{delivery}.log")
    try:
        wait_until(lambda: count_points_v1(url, db, "ecg_anonymized") > 0, 240, "first points", job=job, poll=0.2)
        started = time.monotonic()
        wait_until(lambda: count_points_v1(url, db, "ecg_anonymized") >= points, 600, f"{points} points", job=job,
                   poll=0.5)
        figures.seconds = time.monotonic() - started
        figures.points, figures.frames = count_points_v1(url, db, "ecg_anonymized"), frames
    finally:
        job.stop()
    if figures.points != points:
        raise RuntimeError(f"{delivery}: {figures.points} points, expected {points}")


class _TimedProducer:
    """A kafka-python producer whose sends note their wall-clock moment by (partition, offset)."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = make_producer(bootstrap)
        self.sent_at: dict[tuple[int, int], float] = {}
        self.max_lag_s = 0.0

    def send(self, topic: str, **kwargs: Any) -> Any:
        at = time.time()
        timestamp_ms = kwargs.get("timestamp_ms")
        if timestamp_ms is not None and timestamp_ms < 4_000_000_000_000:  # not an end-of-stream marker
            self.max_lag_s = max(self.max_lag_s, at - (timestamp_ms + FRAME_MS) / 1000)
        future = self._producer.send(topic, **kwargs)
        future.add_callback(lambda metadata: self.sent_at.__setitem__((metadata.partition, metadata.offset), at))
        return future

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        self._producer.close(timeout=timeout)


class _CommittedReader(threading.Thread):
    """read_committed consumer of some topics from the start; the wall-clock moment each record is first seen."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        super().__init__(daemon=True)
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      isolation_level="read_committed", fetch_max_wait_ms=100)
        partitions = [TopicPartition(topic, 0) for topic in topics]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)
        self.seen: list[tuple[str, bytes, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            batch = self.consumer.poll(timeout_ms=100)
            now = time.time()
            for partition, records in batch.items():
                self.seen.extend((partition.topic, record.value, now) for record in records)
        self.consumer.close()

    def of(self, topic: str) -> list[tuple[bytes, float]]:
        return [(value, at) for name, value, at in list(self.seen) if name == topic]


def live_messages(devices: int, seconds: int, start_ms: int, seed: int) -> list[SimMessage]:
    episodes = tuple(Episode(f"dev-{i:04d}", "asystole", start, 7)
                     for i in range(1, devices + 1) for start in range(8 + i % 5, seconds - 4, 12))
    config = SimConfig(patients=devices, duration_s=seconds, start_ms=start_ms, sites=2, synthetic=True,
                       episodes=episodes, bad_fraction=0.05, end_of_stream=True, partitions=4, seed=seed)
    return list(generate_messages(config))


def latency_run(stack: LocalStack, workdir: Path, devices: int, seconds: int, delivery: str, interval: float,
                figures: DeliveryFigures) -> None:
    names = _topics(stack, f"cost-live-{delivery}", 4)
    args = _args(stack, workdir, names, names["raw"], delivery, interval)
    job = JobProcess(args, workdir / f"live-{delivery}.log")
    reader = _CommittedReader(stack.kafka_bootstrap, [names["anomalies"], names["dlq"]])
    producer = _TimedProducer(stack.kafka_bootstrap)
    try:
        wait_until(lambda: latest_checkpoint(workdir / f"checkpoints-{names['prefix']}"), 240, "job running",
                   job=job)
        reader.start()
        start_ms = (int(time.time() * 1000) // 5000 + 2) * 5000  # the next window boundary but one
        messages = live_messages(devices, seconds, start_ms, seed=7)
        expected = {event.event_id for event in expected_branch(messages, args).anomalies}
        bad = sum(1 for message in messages if message.kind == "bad")
        figures.anomalies_expected, figures.dlq_expected = len(expected), bad
        report = produce(messages, stack.kafka_bootstrap, names["raw"], realtime_frame_ms=FRAME_MS, producer=producer)
        if report.errors:
            raise RuntimeError(f"producing failed: {report.error_samples}")
        figures.producer_max_lag_s = producer.max_lag_s

        def all_seen() -> bool:
            anomalies = {json.loads(value)["event_id"] for value, _ in reader.of(names["anomalies"])}
            return expected <= anomalies and len(reader.of(names["dlq"])) >= bad
        try:
            wait_until(all_seen, 60 + 3 * interval, "every anomaly and dead letter (read_committed)", job=job)
        except AssertionError as error:
            print(f"INCOMPLETE ({delivery}): {error}")
        time.sleep(2 * interval)  # nothing more may come (exactly-once: no replays; at-least-once: none, no kill)
    finally:
        reader.stop.set()
        reader.join(timeout=10)
        job.stop()
        producer.close(timeout=10)
    first_seen: dict[str, tuple[int, float]] = {}
    for value, at in reader.of(names["anomalies"]):
        event = json.loads(value)
        if event["event_id"] in first_seen:
            figures.anomalies_seen_twice += 1
        else:
            first_seen[event["event_id"]] = (int(event["ts"]), at)
    figures.anomaly_latency_s = [at - ts / 1000 for event_id, (ts, at) in first_seen.items() if event_id in expected]
    letters: dict[tuple[int, int], float] = {}
    for value, at in reader.of(names["dlq"]):
        letter = json.loads(value)
        position = (int(letter["partition"]), int(letter["offset"]))
        if position in letters:
            figures.dlq_seen_twice += 1
        else:
            letters[position] = at
    figures.dlq_latency_s = [at - producer.sent_at[position] for position, at in letters.items()
                             if position in producer.sent_at]


def _row(name: str, values: list[float]) -> str:
    return (f"{name:<28} {percentile(values, 0.5):7.2f} {percentile(values, 0.95):7.2f} "
            f"{max(values) if values else float('nan'):7.2f}  ({len(values)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100, help="throughput backlog: patients")
    parser.add_argument("--duration", type=int, default=60, help="throughput backlog: seconds per patient")
    parser.add_argument("--devices", type=int, default=16, help="latency: devices streaming in real time")
    parser.add_argument("--live-seconds", type=int, default=60, help="latency: seconds of streaming")
    parser.add_argument("--checkpoint-interval", type=float, default=5.0, help="seconds (the job's default: 5)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, checkpoints)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="delivery-cost-"))
    stack = LocalStack(workdir / "stack")
    results = {delivery: DeliveryFigures(delivery) for delivery in DELIVERIES}
    started = time.monotonic()
    try:
        stack.start(victoria_metrics=False)
        backlog = list(generate_messages(SimConfig(
            patients=args.patients, duration_s=args.duration, start_ms=1_763_812_800_000, sites=2,
            bad_fraction=0.02, end_of_stream=True, partitions=4, seed=11)))
        raw_topic = f"cost-backlog-{uuid.uuid4().hex[:8]}"
        create_topics(stack.kafka_bootstrap, {raw_topic: 4})
        produced = produce(backlog, stack.kafka_bootstrap, raw_topic)
        if produced.errors:
            raise RuntimeError(f"producing the backlog failed: {produced.error_samples}")
        points = expected_output(backlog, k=K).points
        print(f"backlog: {produced.valid} frames, {produced.bad} malformed, {points} points expected")
        for delivery in DELIVERIES:
            throughput_run(stack, workdir, raw_topic, points, produced.valid, delivery, args.checkpoint_interval,
                           results[delivery])
            print(f"throughput {delivery}: {results[delivery].points_per_s:,.0f} points/s "
                  f"({results[delivery].seconds:.1f} s)", flush=True)
        for delivery in DELIVERIES:
            latency_run(stack, workdir, args.devices, args.live_seconds, delivery, args.checkpoint_interval,
                        results[delivery])
            print(f"latency {delivery}: anomaly p50 {percentile(results[delivery].anomaly_latency_s, 0.5):.2f} s",
                  flush=True)
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    alo, eos = results["at-least-once"], results["exactly-once"]
    lines = [
        f"delivery cost: backlog {args.patients} patients x {args.duration} s ({alo.frames} frames); live "
        f"{args.devices} devices x {args.live_seconds} s in real time; checkpoint interval "
        f"{args.checkpoint_interval:g} s; k={K}; cardio branch on",
        "",
        f"{'':<28} {'at-least-once':>15} {'exactly-once':>15} {'eos / alo':>10}",
        f"{'points/s into InfluxDB':<28} {alo.points_per_s:>15,.0f} {eos.points_per_s:>15,.0f} "
        f"{eos.points_per_s / alo.points_per_s:>10.2f}",
        f"{'frames/s':<28} {alo.frames_per_s:>15,.1f} {eos.frames_per_s:>15,.1f} "
        f"{eos.frames_per_s / alo.frames_per_s:>10.2f}",
    ]
    for name, attribute in (("anomaly latency", "anomaly_latency_s"), ("dead-letter latency", "dlq_latency_s")):
        for label, share in (("p50", 0.5), ("p95", 0.95)):
            a, e = percentile(getattr(alo, attribute), share), percentile(getattr(eos, attribute), share)
            lines.append(f"{name + ' ' + label + ' s':<28} {a:>15.2f} {e:>15.2f} {e / a:>10.2f}")
    lines += [
        "",
        "per run                       p50     p95     max  (count)",
        *(_row(f"{f.delivery} anomalies", f.anomaly_latency_s) for f in (alo, eos)),
        *(_row(f"{f.delivery} dead letters", f.dlq_latency_s) for f in (alo, eos)),
        "",
        *(f"{f.delivery}: anomalies seen {len(f.anomaly_latency_s)} of {f.anomalies_expected} (twice: "
          f"{f.anomalies_seen_twice}), dead letters {len(f.dlq_latency_s)} of {f.dlq_expected} (twice: "
          f"{f.dlq_seen_twice}), producer max lag {f.producer_max_lag_s:.2f} s" for f in (alo, eos)),
        f"wall time {time.monotonic() - started:.0f} s",
    ]
    print("\n".join(lines))
    return 0 if alo.complete and eos.complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
