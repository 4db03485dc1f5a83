"""The framework's own ceiling for benchmarks/throughput.py (run c): the job's Kafka source, watermarks
and checkpointing, then one Python key selector, a 5 s event-time tumbling window and a count per
(partition, window) -- no parsing, no privacy core, no sink to speak of. Each window's count is POSTed
to the benchmark's collector.

    python -m benchmarks.plain_window_count_job --collector URL --last-window-start MS <job settings...>
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from typing import Any

from pyflink.common import Types
from pyflink.common.time import Time
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.functions import ProcessWindowFunction
from pyflink.datastream.window import TumblingEventTimeWindows

from connectors.config import load_settings
from connectors.kafka import build_source, watermark_strategy, with_event_time_progress
from flink_jobs.ecg_anonymization_job import create_environment

WINDOW_SECONDS = 5


class EmitCount(ProcessWindowFunction):
    def __init__(self, collector: str, last_window_start: int) -> None:
        self.collector = collector
        self.last_window_start = last_window_start

    def process(self, key: int, context: ProcessWindowFunction.Context, elements: Any):  # type: ignore[no-untyped-def]
        count = next(iter(elements))[1]
        start = context.window().start
        # The end-of-stream markers (far-future timestamps) open a window of their own: not a frame.
        if start <= self.last_window_start:
            request = urllib.request.Request(self.collector, data=str(count).encode(), method="POST")
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
        yield key, start, count


def build(env: StreamExecutionEnvironment, settings: Any, collector: str, last_window_start: int) -> None:
    source = env.from_source(build_source(settings), watermark_strategy(settings), "kafka")
    raw = with_event_time_progress(source, settings)
    (
        raw.map(lambda record: (int(record[1]), 1), output_type=Types.TUPLE([Types.INT(), Types.LONG()]))
        .key_by(lambda pair: pair[0], key_type=Types.INT())
        .window(TumblingEventTimeWindows.of(Time.seconds(WINDOW_SECONDS)))
        .reduce(lambda a, b: (a[0], a[1] + b[1]), window_function=EmitCount(collector, last_window_start),
                output_type=Types.TUPLE([Types.INT(), Types.LONG(), Types.LONG()]))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--collector", required=True)
    parser.add_argument("--last-window-start", type=int, required=True)
    own, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    settings = load_settings(rest)
    env = create_environment(settings)
    build(env, settings, own.collector, own.last_window_start)
    env.execute("plain window count (benchmark)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
