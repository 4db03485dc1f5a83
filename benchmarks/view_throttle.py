"""Throttled views (issue 23 item 5): does a view run at its MAX_RECORDS_PER_SECOND, and does another view on
the same cluster keep its rate?

    .venv/bin/python -m benchmarks.view_throttle [--patients 40] [--duration 2000] [--window 60]

On the local stack (Kafka, influxd) and a standalone Flink cluster (1 TaskManager, 2 slots), one input topic
(4 partitions) is filled with a backlog of --patients x --duration s of 1 s frames. Then, through views.ViewManager
(REST submission, as `python -m views`):

  1. view `alone` (k=5, no throttle) reads the backlog alone: its rate R (frames/s);
  2. it is deleted; view `throttled` (limit R/2) reads the same backlog alone: its rate;
  3. view `other` (no throttle) starts beside it: the rate of each;
  4. both are cancelled; the control: views `even1` and `even2` (no throttle) start together: how two views
     split the machine without a throttle;
  5. both are cancelled; view `quarter` (limit R/4) and view `rest` (no throttle) start together: does the
     throttle leave the rest of the machine to the other view? With `quarter` held at R/4, `rest` should get
     about the capacity its limit leaves, R - R/4, clearly more than its share in step 4: on 2 cores that is
     how "another view keeps its own rate" can be told apart from the CPU split (README, "Anonymized views").

A view's rate: frames it published (points in its measurement / samples per frame; every input record here is
one frame, suppressed samples are points too) over a --window s stretch that starts 15 s after its first points
(start-up excluded) and ends before it reaches the end of the backlog. Points come per closed 5 s window and
site: with --patients 40 a step is 50 frames, so the figure is exact to about 100 frames over the window. (The
REST metrics of the source, numRecordsOut, did not move during a first attempt, so the output is counted.)
Prints one line per measurement.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

from devstack.flink_cluster import FlinkCluster
from devstack.kafka_admin import create_topics
from devstack.simulator import SimConfig, generate_messages, produce
from devstack.stack import LocalStack
from views import Outputs, Profile, ViewManager

SECRET = "benchmark-secret-0123456789abcdef"


def frames_published(manager: ViewManager, name: str, samples_per_frame: int) -> float:
    """Frames the view has published: points in its measurement (every sample is a point, suppressed ones too)
    divided by the samples of a frame."""
    return (manager.points(manager.get(name)) or 0) / samples_per_frame


def records_in(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        begin, end = consumer.beginning_offsets(partitions), consumer.end_offsets(partitions)
        return sum(end[tp] - begin[tp] for tp in partitions)
    finally:
        consumer.close()


def measure(manager: ViewManager, names: list[str], window: float, total: int, spf: int) -> dict[str, float]:
    """frames/s of each view over `window` s, from 15 s after all of them published their first points."""
    deadline = time.monotonic() + 300
    while any(frames_published(manager, name, spf) == 0 for name in names):
        if time.monotonic() > deadline:
            raise RuntimeError("a view published nothing in 300 s")
        time.sleep(0.5)
    time.sleep(15)
    start = {name: (time.monotonic(), frames_published(manager, name, spf)) for name in names}
    time.sleep(window)
    rates = {}
    for name in names:
        now, read = time.monotonic(), frames_published(manager, name, spf)
        if read >= total:
            raise RuntimeError(f"view {name} reached the end of the backlog inside the window: more --duration")
        rates[name] = (read - start[name][1]) / (now - start[name][0])
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--duration", type=int, default=2000)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--shares-only", action="store_true", help="steps 1, 4 and 5 only")
    ns = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="view-throttle-") as tmp:
        workdir = Path(tmp)
        stack = LocalStack(workdir / "stack")
        stack.start(victoria_metrics=False)
        cluster = FlinkCluster(workdir / "flink", rest_port=0, parallelism=1, slots=2)
        try:
            cluster.start()
            topic, dlq = f"ecg-raw.throttle-{uuid.uuid4().hex[:6]}", f"ecg-dlq.throttle-{uuid.uuid4().hex[:6]}"
            dlqs = {name: f"{dlq}.{name}" for name in ("alone", "throttled", "other", "even1", "even2", "quarter",
                                                         "rest")}
            create_topics(stack.kafka_bootstrap, {topic: 4, dlq: 1, **dict.fromkeys(dlqs.values(), 1)})
            config = SimConfig(patients=ns.patients, duration_s=ns.duration, sites=4, start_ms=1_763_812_800_000,
                               partitions=4, seed=5)
            messages = list(generate_messages(config))
            spf = config.samples_per_frame
            produce(messages, stack.kafka_bootstrap, topic)
            total = len(messages)
            print(f"backlog: {total} frames ({ns.patients} patients x {ns.duration} s) in {topic}", flush=True)
            manager = ViewManager(workdir / "views", cluster.rest_url, {
                "KAFKA_BOOTSTRAP": stack.kafka_bootstrap, "KAFKA_INPUT_TOPIC": topic, "KAFKA_DLQ_TOPIC": dlq,
                "INFLUX_TRANSPORT": "v1", "INFLUX_URL": stack.influx_v1_url}, {"PSEUDONYM_SECRET": SECRET})
            suffix = uuid.uuid4().hex[:6]

            manager.create("alone", Profile(k=5), Outputs(influx_db=f"alone_{suffix}", dlq_topic=dlqs["alone"]),
                           wait_running=120)
            alone = measure(manager, ["alone"], ns.window, total, spf)["alone"]
            print(f"alone, no throttle:           {alone:7.1f} frames/s", flush=True)
            # Cancelled, not stopped: a savepoint of a job this far behind (an aligned checkpoint queued
            # behind the backpressured backlog) expired after the 120 s checkpoint timeout in a first attempt.
            manager.rest.cancel(manager.get("alone").job_id)
            manager.rest.wait_for_state(manager.get("alone").job_id, ["CANCELED"], 180)
            manager.delete("alone", drop_output=True)

            if not ns.shares_only:  # steps 2 and 3
                limit = round(alone / 2, 1)
                manager.create("throttled", Profile(k=5, max_records_per_second=limit),
                               Outputs(influx_db=f"throttled_{suffix}", dlq_topic=dlqs["throttled"]), wait_running=120)
                rate = measure(manager, ["throttled"], ns.window, total, spf)["throttled"]
                print(f"throttled alone, limit {limit:7.1f}: {rate:7.1f} frames/s "
                      f"({100 * (rate - limit) / limit:+.1f} % of the limit)", flush=True)
                manager.create("other", Profile(k=5), Outputs(influx_db=f"other_{suffix}", dlq_topic=dlqs["other"]),
                               wait_running=120)
                rates = measure(manager, ["throttled", "other"], ns.window, total, spf)
                off = 100 * (rates["throttled"] - limit) / limit
                print(f"throttled beside other:       {rates['throttled']:7.1f} frames/s ({off:+.1f} % of the limit)")
                print(f"other (no throttle) beside:   {rates['other']:7.1f} frames/s "
                      f"({100 * rates['other'] / alone:.0f} % of the rate alone)", flush=True)
                for name in ("throttled", "other"):
                    manager.rest.cancel(manager.get(name).job_id)
                    manager.rest.wait_for_state(manager.get(name).job_id, ["CANCELED"], 180)

            for name in ("even1", "even2"):
                manager.create(name, Profile(k=5), Outputs(influx_db=f"{name}_{suffix}", dlq_topic=dlqs[name]),
                               wait_running=120)
            rates = measure(manager, ["even1", "even2"], ns.window, total, spf)
            print(f"even1 and even2 (no throttle) together: {rates['even1']:7.1f} and {rates['even2']:7.1f} frames/s "
                  f"({100 * rates['even1'] / alone:.0f} % and {100 * rates['even2'] / alone:.0f} % of the rate alone)",
                  flush=True)
            for name in ("even1", "even2"):
                manager.rest.cancel(manager.get(name).job_id)
                manager.rest.wait_for_state(manager.get(name).job_id, ["CANCELED"], 180)

            quarter = round(alone / 4, 1)
            manager.create("quarter", Profile(k=5, max_records_per_second=quarter),
                           Outputs(influx_db=f"quarter_{suffix}", dlq_topic=dlqs["quarter"]), wait_running=120)
            manager.create("rest", Profile(k=5), Outputs(influx_db=f"rest_{suffix}", dlq_topic=dlqs["rest"]),
                           wait_running=120)
            rates = measure(manager, ["quarter", "rest"], ns.window, total, spf)
            left = alone - quarter
            print(f"quarter beside rest, limit {quarter:7.1f}: {rates['quarter']:7.1f} frames/s "
                  f"({100 * (rates['quarter'] - quarter) / quarter:+.1f} % of the limit)")
            print(f"rest (no throttle) beside quarter: {rates['rest']:7.1f} frames/s = "
                  f"{100 * rates['rest'] / left:.0f} % of the capacity the limit leaves ({left:.1f}), "
                  f"{100 * rates['rest'] / alone:.0f} % of the rate alone; sum {rates['quarter'] + rates['rest']:.1f}",
                  flush=True)
            late = {name: records_in(stack.kafka_bootstrap, dlqs[name]) for name in dlqs}
            print(f"dead letters (late frames would be here): {late}", flush=True)
            for name in ("quarter", "rest"):
                manager.rest.cancel(manager.get(name).job_id)
        finally:
            cluster.stop()
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
