"""The KafkaSource the settings build: streaming by default, bounded for a backfill (KAFKA_STOP_AT), with
the start and stop timestamps handed to Kafka's offsets-for-times lookups. Runs PyFlink's JVM, no broker."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.config import load_settings
from connectors.kafka import (
    SMALLEST_FRAME_BYTES,
    THROTTLED_PARTITION_FETCH_BYTES,
    build_source,
    throttled_turn_wait_seconds,
)

SECRET = "s3cret-value-for-tests-0123456789"


@pytest.fixture(scope="module")
def jvm_with_jars() -> None:
    from pyflink.datastream import StreamExecutionEnvironment

    from connectors.jars import pipeline_jars

    StreamExecutionEnvironment.get_execution_environment().add_jars(*pipeline_jars().split(";"))


def _field(java_object: Any, name: str) -> Any:
    field = java_object.getClass().getDeclaredField(name)
    field.setAccessible(True)
    return field.get(java_object)


def _source(*argv: str) -> Any:
    return build_source(load_settings(list(argv), environ={"PSEUDONYM_SECRET": SECRET})).get_java_function()


def test_streaming_by_default(jvm_with_jars: None) -> None:
    source = _source()
    assert source.getBoundedness().toString() == "CONTINUOUS_UNBOUNDED"
    assert _field(source, "stoppingOffsetsInitializer").getClass().getSimpleName() == "NoStoppingOffsetsInitializer"


def test_backfill_to_the_offsets_at_start_is_bounded(jvm_with_jars: None) -> None:
    source = _source("--kafka-stop-at", "latest", "--cardio-branch", "false")
    assert source.getBoundedness().toString() == "BOUNDED"
    assert _field(source, "stoppingOffsetsInitializer").getClass().getSimpleName() == "LatestOffsetsInitializer"


def test_backfill_of_a_range_by_timestamps(jvm_with_jars: None) -> None:
    source = _source("--kafka-starting-offsets", "1763812810000", "--kafka-stop-at", "2025-11-22T12:00:25Z",
                     "--cardio-branch", "false")
    assert source.getBoundedness().toString() == "BOUNDED"
    start, stop = _field(source, "startingOffsetsInitializer"), _field(source, "stoppingOffsetsInitializer")
    assert start.getClass().getSimpleName() == stop.getClass().getSimpleName() == "TimestampOffsetsInitializer"
    assert (_field(start, "startingTimestamp"), _field(stop, "startingTimestamp")) == (1_763_812_810_000,
                                                                                       1_763_812_825_000)


@pytest.mark.parametrize("rate", ["5", "43.3", "2000"])
def test_a_throttled_source_fetches_a_whole_producer_batch_of_every_partition(jvm_with_jars: None, rate: str) -> None:
    """The broker returns a batch larger than max.partition.fetch.bytes only to the first non-empty partition of a
    fetch: a throttled source must not fetch less per partition than the largest batch on a default broker
    (message.max.bytes, 1 MB + 12 bytes), whatever its rate; max.poll.records keeps its polls at ~1 s of records."""
    properties = _field(_source("--max-records-per-second", rate), "props")
    assert int(properties.getProperty("max.partition.fetch.bytes")) == THROTTLED_PARTITION_FETCH_BYTES >= 1048588
    assert properties.getProperty("max.poll.records") == str(max(1, min(500, round(float(rate)))))


def test_a_throttled_readers_longest_wait_for_a_turn() -> None:
    """One full fetch of frames per other partition of the reader, at the reader's rate (README, Throttle)."""
    settings = load_settings(["--max-records-per-second", "10", "--parallelism", "2"],
                             environ={"PSEUDONYM_SECRET": SECRET})
    turn_s = THROTTLED_PARTITION_FETCH_BYTES / SMALLEST_FRAME_BYTES / 5
    assert throttled_turn_wait_seconds(settings, 1) == 0
    assert throttled_turn_wait_seconds(settings, 4) == pytest.approx(3 * turn_s)
