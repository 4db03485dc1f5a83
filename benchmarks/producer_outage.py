"""What does a device lose when the broker is down for a while? (issue 20, item 4: a 120 s kill -9 during a live
stream.)

    .venv/bin/python -m benchmarks.producer_outage [--outage 120] [--devices 20] \
        [--variant NAME=delivery_timeout_ms:300000,enable_idempotence:false,...]

No job: a Kafka broker of its own and, side by side through the same outage, one group of simulated devices per
variant (``devstack.simulator.make_producer`` with the variant's settings changed, each group on its own topic;
default variants: the simulator's producer as it is, 300 s delivery timeout, and with the client's default 120 s,
which the simulator had before), every frame sent when its last sample is due (``produce(realtime_frame_ms=1000)``).
The broker is killed (SIGKILL) 10 s into the stream and restarted on the same log directory `--outage` seconds
later; the stream goes on for 15 s after that.

Printed per variant: frames sent, frames the producer reported failed, whether its flush ended within
`--flush-timeout` s after the stream, frames in the topic at the end and the lost frames' times relative to the
kill (a frame's time is when its device sent it); the bytes per frame give what a device buffers per second of
outage. The producers' producer-id changes are logged (kafka-python, INFO).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kafka.errors import KafkaTimeoutError

from devstack.kafka_admin import create_topics
from devstack.simulator import KIND_FRAME, ProduceReport, SimConfig, generate_messages, make_producer, produce
from devstack.stack import LocalStack
from testkit.kafka_topics import read_topic

KILL_AFTER_S = 10
AFTER_OUTAGE_S = 15


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage", type=int, default=120, help="seconds the broker is down")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=setting:value,... (kafka-python producer settings; ints and true/false)")
    parser.add_argument("--flush-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    variants = dict(_variant(text) for text in args.variant) or {
        "as-is": {}, "delivery-120s": {"delivery_timeout_ms": 120_000}}
    stream_s = KILL_AFTER_S + args.outage + AFTER_OUTAGE_S
    # What the producers' idempotence state machine does (producer id and epoch, logged at INFO).
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(threadName)s %(name)s %(message)s")
    logging.getLogger("kafka.producer.transaction_manager").setLevel(logging.INFO)

    with tempfile.TemporaryDirectory(prefix="producer-outage-") as tmp:
        stack = LocalStack(Path(tmp) / "stack")
        stack.start(kafka=True, influx_v1=False, victoria_metrics=False)
        try:
            create_topics(stack.kafka_bootstrap, {f"devices-{name}": 4 for name in variants})
            start_ms = (int(time.time() * 1000) // 1000 + 3) * 1000
            messages = [m for m in generate_messages(SimConfig(
                patients=args.devices, duration_s=stream_s, start_ms=start_ms, sites=2, partitions=4, seed=31,
            )) if m.kind == KIND_FRAME]  # fmt: skip
            reports: dict[str, ProduceReport] = {}
            flushed: dict[str, str] = {}
            producers = {name: make_producer(stack.kafka_bootstrap, client_id=f"devices-{name}", **settings)
                         for name, settings in variants.items()}

            def devices(name: str) -> None:
                try:
                    reports[name] = produce(messages, stack.kafka_bootstrap, f"devices-{name}",
                                            realtime_frame_ms=1000, producer=producers[name],
                                            flush_timeout_s=args.flush_timeout)
                    flushed[name] = "flushed"
                except KafkaTimeoutError:
                    flushed[name] = f"flush NOT done {args.flush_timeout:.0f} s after the stream"

            threads = [threading.Thread(target=devices, args=(name,), daemon=True) for name in variants]
            for thread in threads:
                thread.start()
            kill_ms = start_ms + (KILL_AFTER_S + 1) * 1000  # frames due (sent) from here on meet a dead broker
            time.sleep(max(0.0, kill_ms / 1000 - time.time()))
            stack.kill_kafka()
            killed = time.monotonic()
            time.sleep(args.outage)
            stack.restart_kafka()
            print(f"broker down {time.monotonic() - killed:.1f} s (kill -9 at {KILL_AFTER_S} s of a {stream_s} s "
                  f"stream of {args.devices} devices, restart on the same log directory)", flush=True)
            for thread in threads:
                thread.join(timeout=stream_s + args.flush_timeout + 60)
            sent_at = {(m.key, m.timestamp_ms): m.timestamp_ms + 1000 for m in messages}
            frame_bytes = sum(len(m.value) for m in messages) / len(messages)
            for name, settings in variants.items():
                stored = {(r.key, r.timestamp) for r in read_topic(stack.kafka_bootstrap, f"devices-{name}")}
                lost = sorted((sent_at[key] - kill_ms) / 1000 for key in sent_at.keys() - stored)
                span = f", sent {lost[0]:+.0f} s to {lost[-1]:+.0f} s from the kill" if lost else ""
                errors = reports[name].errors if name in reports else "?"
                print(f"{name} {settings}: {len(messages)} frames sent ({frame_bytes:.0f} bytes each), {errors} "
                      f"reported failed, {flushed.get(name, 'flush running')}, {len(stored)} in the topic, "
                      f"{len(lost)} lost{span}", flush=True)
            for producer in producers.values():
                try:
                    producer.close(timeout=5)
                except KafkaTimeoutError:
                    pass
        finally:
            stack.stop()
    return 0


def _variant(text: str) -> tuple[str, dict[str, Any]]:
    name, _, settings = text.partition("=")
    parsed: dict[str, Any] = {}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition(":")
        parsed[key] = value == "true" if value in ("true", "false") else int(value)
    return name, parsed


if __name__ == "__main__":
    raise SystemExit(main())
