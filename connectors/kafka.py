"""Kafka source and sinks of the job (PyFlink builders)."""

from __future__ import annotations

from typing import Any

from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.serialization import SimpleStringSchema
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaRecordSerializationSchema,
    KafkaSink,
    KafkaSource,
)
from pyflink.java_gateway import get_gateway

DESERIALIZER_CLASS = "io.ecgflinkanon.connectors.EcgRecordDeserializer"


def _starting_offsets(mode: str) -> KafkaOffsetsInitializer:
    if mode == "latest":
        return KafkaOffsetsInitializer.latest()
    if mode == "committed":
        return KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST)
    return KafkaOffsetsInitializer.earliest()


def build_source(settings: Any) -> KafkaSource:
    """KafkaSource of raw records: Row(topic, partition, offset, timestamp, value bytes).

    Offsets live in Flink checkpoints (committing to the group is informational only), and the
    deserializer never fails on content, so no input message can stop the source.
    """
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(settings.kafka_bootstrap)
        .set_topics(settings.kafka_input_topic)
        .set_group_id(settings.kafka_group_id)
        .set_starting_offsets(_starting_offsets(settings.kafka_starting_offsets))
        .set_property("partition.discovery.interval.ms", "60000")
        # Frames up to the contract's oversize limit must fit one fetch.
        .set_property("max.partition.fetch.bytes", str(16 * 1024 * 1024))
    )
    # PyFlink exposes only value-only deserializers; ours keeps partition/offset for the DLQ.
    deserializer_class = get_gateway().jvm.io.ecgflinkanon.connectors.EcgRecordDeserializer
    if not callable(deserializer_class) or type(deserializer_class).__name__ == "JavaPackage":
        raise RuntimeError(
            f"{DESERIALIZER_CLASS} is not on the classpath: run scripts/setup.sh to build "
            ".cache/jars/ecg-flink-anon-connectors.jar"
        )
    builder._j_builder.setDeserializer(deserializer_class())
    return builder.build()


def watermark_strategy(settings: Any) -> WatermarkStrategy:
    """Per-partition watermarks from Kafka record timestamps (generated inside the source)."""
    return WatermarkStrategy.for_bounded_out_of_orderness(
        Duration.of_seconds(int(settings.max_out_of_orderness_seconds))
    )


def build_string_sink(settings: Any, topic: str, transactional_id_prefix: str) -> KafkaSink:
    """A KafkaSink for JSON strings. exactly-once uses Kafka transactions (2PC with checkpoints)."""
    exactly_once = settings.kafka_delivery == "exactly-once"
    builder = (
        KafkaSink.builder()
        .set_bootstrap_servers(settings.kafka_bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(topic)
            .set_value_serialization_schema(SimpleStringSchema())
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE if exactly_once else DeliveryGuarantee.AT_LEAST_ONCE)
        .set_property("max.request.size", str(2 * 1024 * 1024))
    )
    if exactly_once:
        builder = builder.set_transactional_id_prefix(transactional_id_prefix).set_property(
            "transaction.timeout.ms", str(settings.kafka_transaction_timeout_ms)
        )
    return builder.build()
