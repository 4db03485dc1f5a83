"""The anonymization job's operators on a collection, in a local PyFlink mini cluster (no Kafka, no InfluxDB).

`run_pipeline` builds the job's own graph (flink_jobs.ecg_anonymization_job.build_pipeline, the job's settings
from its command-line flags) between a bounded collection of raw records, of the type the Kafka source yields
(connectors.kafka.RAW_RECORD), and collecting sinks, and returns every window and dead letter it produced. The
collection ends, so the final watermark closes every window: the output is the reference model's
(testkit.reference) for all windows. Operator behaviour (windows, suppression, DLQ routing) is tested this way
in seconds; only what depends on the services (restore, outages, exactly-once, partitions) needs the stack.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyflink.common import Configuration, Duration, Row, Types, WatermarkStrategy
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import DataStream, StreamExecutionEnvironment

from connectors.config import Settings, load_settings
from connectors.jars import pipeline_jars
from connectors.kafka import RAW_RECORD, model_watermark_strategy
from devstack.simulator import SimMessage
from flink_jobs.cardio_branch import BranchSinks
from flink_jobs.cardio_job import build_cardio_pipeline
from flink_jobs.ecg_anonymization_job import JobSinks, build_pipeline
from operators.records import WindowOutput
from testkit.jobs import TEST_SECRET

TOPIC = "ecg-raw"


@dataclass(frozen=True)
class InputRecord:
    """One input record as the Kafka source yields it (its position is what dead letters carry)."""

    partition: int
    offset: int
    timestamp_ms: int
    value: bytes
    topic: str = TOPIC


@dataclass(frozen=True)
class PublishedPoints:
    """One published frame of a window: its pseudonym, level, labels and finite samples (InfluxDB points)."""

    pid: str
    ts_ms: int
    level: int
    labels: dict[str, str]
    points: int
    imputed: bool


@dataclass(frozen=True)
class CollectedWindow:
    group: str
    window_start_ms: int
    frames_in: int
    frames_published: int
    frames_suppressed: int
    accounting_ok: bool
    frames: list[PublishedPoints]


@dataclass(frozen=True)
class PipelineOutput:
    windows: list[CollectedWindow]
    dead_letters: list[dict[str, Any]]  # the DLQ's JSON, parsed


def records_of(messages: Iterable[SimMessage], partitions: int = 4) -> list[InputRecord]:
    """Simulator messages as records of `partitions` partitions (round robin; controls on their own), in order."""
    offsets = [0] * partitions
    records = []
    for index, message in enumerate(messages):
        partition = message.partition if message.partition is not None else index % partitions
        records.append(InputRecord(partition, offsets[partition], message.timestamp_ms, message.value))
        offsets[partition] += 1
    return records


class RecordTimestamp(TimestampAssigner):
    """Event time = the record timestamp, as the Kafka source assigns it."""

    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return int(value[3])


def _window_json(window: WindowOutput) -> str:
    metrics = window.metrics
    frames = [[frame.pid, frame.ts_ms, int(frame.level), dict(frame.qi), int(np.isfinite(frame.ecg_mv).sum()),
               bool(frame.imputed)] for frame in window.published]
    return json.dumps({"window": [window.group, window.window_start_ms, metrics.frames_in, metrics.frames_published,
                                  metrics.frames_suppressed, bool(metrics.accounting_ok()), frames]})


def _dead_letter_json(letter: str) -> str:
    return json.dumps({"dead_letter": letter})


class CollectingSinks:
    """JobSinks that keep the output streams; `collect` runs the job and reads them back."""

    def __init__(self) -> None:
        self.windows: DataStream | None = None
        self.dead_letters: DataStream | None = None

    def job_sinks(self) -> JobSinks:
        def keep_windows(stream: DataStream) -> None:
            self.windows = stream

        def keep_dead_letters(stream: DataStream) -> None:
            self.dead_letters = stream

        return JobSinks(windows=keep_windows, dead_letters=keep_dead_letters)

    def collect(self) -> PipelineOutput:
        assert self.windows is not None and self.dead_letters is not None
        # One collected stream of tagged JSON: execute_and_collect reads one stream per run.
        tagged = self.windows.map(_window_json, output_type=Types.STRING()).union(
            self.dead_letters.map(_dead_letter_json, output_type=Types.STRING()))
        windows: list[CollectedWindow] = []
        dead_letters: list[dict[str, Any]] = []
        with tagged.execute_and_collect("ecg pipeline on a collection") as results:
            for text in results:
                item = json.loads(text)
                if "dead_letter" in item:
                    dead_letters.append(json.loads(item["dead_letter"]))
                    continue
                group, start, frames_in, published, suppressed, ok, frames = item["window"]
                windows.append(CollectedWindow(group, start, frames_in, published, suppressed, ok,
                                               [PublishedPoints(*frame) for frame in frames]))
        windows.sort(key=lambda window: (window.group, window.window_start_ms))
        return PipelineOutput(windows, dead_letters)


def run_pipeline(records: Sequence[InputRecord], argv: Sequence[str] = (), *, parallelism: int = 2) -> PipelineOutput:
    """The job's operators with the settings of `argv` (PSEUDONYM_SECRET = testkit.jobs.TEST_SECRET) on `records`.

    The caller's environment is restored afterwards: PyFlink runs the Python workers of a local job in this
    process (loopback mode) and leaves PYFLINK_GATEWAY_DISABLED=true and its worker variables in os.environ,
    which made every job started later from the same process (the integration tests) die at its first
    PyFlink call ("launching the PythonGatewayServer during Python UDF execution")."""
    saved = dict(os.environ)
    try:
        return _run_pipeline(records, argv, parallelism)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _environment_and_source(records: Sequence[InputRecord], settings: Settings, parallelism: int,
                            extra: dict[str, str] | None = None) -> tuple[StreamExecutionEnvironment, DataStream]:
    config = Configuration()
    for key, value in (extra or {}).items():
        config.set_string(key, value)
    config.set_string("parallelism.default", str(parallelism))
    config.set_string("python.executable", sys.executable)  # Python workers with this environment's packages
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.add_jars(*pipeline_jars().split(";"))  # WindowCloser, RoundTicks, ModelStreamWatermarks (connectors/java)
    rows = [Row(record.topic, record.partition, record.offset, record.timestamp_ms, record.value)
            for record in records]
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(
        Duration.of_seconds(int(settings.max_out_of_orderness_seconds))).with_timestamp_assigner(RecordTimestamp())
    return env, env.from_collection(rows, type_info=RAW_RECORD).assign_timestamps_and_watermarks(strategy)


def _run_pipeline(records: Sequence[InputRecord], argv: Sequence[str], parallelism: int) -> PipelineOutput:
    settings = load_settings(list(argv), environ={"PSEUDONYM_SECRET": TEST_SECRET})
    _, source = _environment_and_source(records, settings, parallelism)
    sinks = CollectingSinks()
    build_pipeline(settings, source, sinks.job_sinks())
    return sinks.collect()


@dataclass(frozen=True)
class BranchOutput:
    anomalies: list[dict[str, Any]]  # the JSON the job publishes to ecg-anomalies, parsed
    model_updates: list[dict[str, Any]]  # ... to ecg-model-updates (local and global updates)
    dead_letters: list[dict[str, Any]]


def _tagged(tag: str) -> Callable[[Any], str]:
    def tag_json(value: Any) -> str:
        return json.dumps({tag: value if isinstance(value, str) else value.to_json()})

    return tag_json


def run_cardio_pipeline(records: Sequence[InputRecord], globals_back: Sequence[str], argv: Sequence[str] = (), *,
                        parallelism: int = 1) -> BranchOutput:
    """The cardio job's operators (flink_jobs.cardio_job.build_cardio_pipeline) on `records`, with `globals_back`
    (global update JSON texts) as what the branch reads back from ecg-model-updates: a collection cannot feed the
    job's own output back, so the caller gives the global updates the loop would carry (the reference model's).
    Parallelism 1 by default: the collection is one source subtask, and a rebalance from it to two parse subtasks
    would reorder a device's frames (the detector's beats and heart rate follow frame order), which the Kafka
    source never does (a device's records are in one partition). The environment is restored as by
    `run_pipeline`."""
    saved = dict(os.environ)
    try:
        return _run_cardio_pipeline(records, globals_back, argv, parallelism)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _run_cardio_pipeline(records: Sequence[InputRecord], globals_back: Sequence[str], argv: Sequence[str],
                         parallelism: int) -> BranchOutput:
    settings = load_settings(list(argv), environ={"PSEUDONYM_SECRET": TEST_SECRET})
    # Python operator chaining fused the branch's filters with the collecting maps into nodes that carried the
    # same uid twice ("Hash collision on user-specified ID cardio-anomalies"); the production sinks are not maps.
    env, source = _environment_and_source(records, settings, parallelism,
                                          {"python.operator-chaining.enabled": "false"})
    models = env.from_collection(list(globals_back), type_info=Types.STRING()).assign_timestamps_and_watermarks(
        model_watermark_strategy())
    collected: dict[str, DataStream] = {}

    def keep(tag: str) -> Callable[[DataStream], None]:
        def attach(stream: DataStream) -> None:
            collected[tag] = stream.map(_tagged(tag), output_type=Types.STRING()).uid(f"collect-{tag}")

        return attach

    build_cardio_pipeline(settings, source, models, BranchSinks(anomalies=keep("anomaly"),
                                                                 model_updates=keep("model_update"),
                                                                 dead_letters=keep("dead_letter")))
    output = BranchOutput([], [], [])
    lists = {"anomaly": output.anomalies, "model_update": output.model_updates, "dead_letter": output.dead_letters}
    tagged = collected["anomaly"].union(collected["model_update"], collected["dead_letter"])
    with tagged.execute_and_collect("ecg cardio pipeline on a collection") as results:
        for text in results:
            ((tag, value),) = json.loads(text).items()
            lists[tag].append(json.loads(value))
    return output
