"""The KafkaSource the settings build: streaming by default, bounded for a backfill (KAFKA_STOP_AT), with
the start and stop timestamps handed to Kafka's offsets-for-times lookups. Runs PyFlink's JVM, no broker."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.config import load_settings
from connectors.kafka import build_source

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
