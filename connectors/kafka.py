"""Kafka source and sinks of the job (PyFlink builders)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pyflink.common import Duration, Types, WatermarkStrategy
from pyflink.common.serialization import SimpleStringSchema
from pyflink.datastream import DataStream
from pyflink.datastream.connectors.base import DeliveryGuarantee, Source
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaRecordSerializationSchema,
    KafkaSink,
    KafkaSource,
)
from pyflink.java_gateway import get_gateway

from connectors.jars import project_class
from connectors.kafka_security import KafkaSecurity

DESERIALIZER_CLASS = "io.ecgflinkanon.connectors.EcgRecordDeserializer"
# What the source yields (EcgRecordDeserializer.getProducedType): the job's input record type, also the type of
# the collections that tests feed the job's operators (testkit/pipeline.py).
RAW_RECORD = Types.ROW_NAMED(
    ["topic", "partition", "offset", "timestamp", "value"],
    [Types.STRING(), Types.INT(), Types.LONG(), Types.LONG(), Types.PRIMITIVE_ARRAY(Types.BYTE())],
)
PROGRESS_CLASS = "io.ecgflinkanon.connectors.EventTimeProgress"
TRACKING_CLASS = "io.ecgflinkanon.connectors.PartitionTrackingSource"
GUARD_CLASS = "io.ecgflinkanon.connectors.LivenessGuard"
THROTTLE_CLASS = "io.ecgflinkanon.connectors.ThrottledSource"
# Per partition and fetch of a throttled source: the largest record batch a producer can send to a broker with
# Kafka's default message.max.bytes (1 MB + 12 bytes of batch overhead), rounded up. A larger batch (a topic
# with a larger max.message.bytes and a producer with batch.size above 1 MB) would be read only while its
# partition is the first non-empty one of the fetch.
THROTTLED_PARTITION_FETCH_BYTES = 1024 * 1024 + 64 * 1024
# The smallest ECG frame (1 s at 360 Hz, ~2.3-2.7 KB in the simulator's encoding): with it a partition's fetch is
# at most ~470 records, the longest turn a throttled reader gives one partition. Smaller records make it longer.
SMALLEST_FRAME_BYTES = 2300
# Partitions per reader assumed when the input topic cannot be described at start.
ASSUMED_PARTITIONS_PER_READER = 8

log = logging.getLogger("ecg.kafka")


def _starting_offsets(mode: str | int) -> KafkaOffsetsInitializer:
    if isinstance(mode, int):  # epoch ms: the first record at or after it, per partition
        return KafkaOffsetsInitializer.timestamp(mode)
    if mode == "latest":
        return KafkaOffsetsInitializer.latest()
    if mode == "committed":
        return KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST)
    return KafkaOffsetsInitializer.earliest()


def client_properties(settings: Any) -> dict[str, str]:
    """Security properties of every Java Kafka client of the job (connectors/kafka_security.py)."""
    return KafkaSecurity.from_settings(settings).java_properties()


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
        # Kafka's default 1 MB per partition and fetch, so that a catch-up interleaves the partitions
        # in small steps. With 16 MB, one fetch held a whole partition of a backlog (~3,400 frames);
        # the reader emitted it while the other partitions waited for longer than the idle timeout,
        # were taken for idle, and their first frames arrived late (tests/integration/
        # test_chaos_resume.py, backlog). A record larger than this still comes through (KIP-74).
        .set_property("max.partition.fetch.bytes", str(1024 * 1024))
    )
    for key, value in client_properties(settings).items():
        builder = builder.set_property(key, value)
    # PyFlink exposes only value-only deserializers; ours keeps partition/offset for the DLQ.
    deserializer_class = project_class(DESERIALIZER_CLASS)
    builder._j_builder.setDeserializer(deserializer_class())
    if settings.max_records_per_second > 0:
        # A throttled reader emits one poll's records over (max.poll.records / its rate) seconds: about one
        # second of records per poll. max.partition.fetch.bytes stays at least the largest record batch a
        # producer can send: the broker returns a batch larger than it only to the first non-empty partition of
        # a fetch (KIP-74), the others get nothing. At ~1 KB per record/s a reader at 43 records/s over 4
        # partitions read 2 of them and left the other 2 at the end of their first 256 KB batch (issue 23).
        per_reader = settings.max_records_per_second / settings.parallelism
        builder = builder.set_property("max.poll.records", str(max(1, min(500, round(per_reader))))).set_property(
            "max.partition.fetch.bytes", str(THROTTLED_PARTITION_FETCH_BYTES))
    if settings.kafka_stop_at != "none":
        # A one-time backfill: the source ends there, Flink then emits the final watermark (every window
        # closes) and the job finishes. A timestamp stops before the first record at or after it.
        stop = settings.kafka_stop_at
        builder = builder.set_bounded(
            KafkaOffsetsInitializer.latest() if stop == "latest" else KafkaOffsetsInitializer.timestamp(stop)
        )
    return builder.build()


def partition_tracking(source: KafkaSource) -> Source:
    """The source wrapped in connectors/java/PartitionTrackingSource: its readers record which partitions they
    were given and from which offset, so that EventTimeProgress holds event time for a partition with records
    that has not delivered one yet (the source alone takes it for idle after IDLE_PARTITION_TIMEOUT_SECONDS).
    Same splits and serializers: checkpoints of the unwrapped source restore into it."""
    tracking_class = project_class(TRACKING_CLASS)
    return Source(tracking_class(source.get_java_function()))


def throttled(source: Source, settings: Any) -> Source:
    """MAX_RECORDS_PER_SECOND > 0: the source wrapped in connectors/java/ThrottledSource (the rate over the whole
    job, each reader its share; backpressure, nothing dropped or reordered); else the source itself. Same splits
    and serializers: checkpoints restore across a throttle change."""
    if not settings.max_records_per_second > 0:
        return source
    throttle_class = project_class(THROTTLE_CLASS)
    return Source(throttle_class(source.get_java_function(), float(settings.max_records_per_second)))


def build_model_source(settings: Any) -> KafkaSource:
    """KafkaSource of the model-update topic (values as strings), read back by the cardio branch."""
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(settings.kafka_bootstrap)
        .set_topics(settings.kafka_model_topic)
        .set_group_id(settings.kafka_group_id + "-models")
        .set_starting_offsets(_starting_offsets(settings.kafka_model_starting_offsets))
        .set_property("partition.discovery.interval.ms", "60000")
        # Exactly-once sinks: only committed global updates reach the detectors.
        .set_property("isolation.level", "read_committed")
        .set_value_only_deserializer(SimpleStringSchema())
    )
    for key, value in client_properties(settings).items():
        builder = builder.set_property(key, value)
    return builder.build()


def model_watermark_strategy() -> WatermarkStrategy:
    """The model stream never constrains event time: it is always idle (ModelStreamWatermarks, connectors/java)."""
    strategy_class = project_class("io.ecgflinkanon.connectors.ModelStreamWatermarks")
    return WatermarkStrategy(strategy_class())


def watermark_strategy(settings: Any) -> WatermarkStrategy:
    """Per-partition watermarks from Kafka record timestamps (generated inside the source).

    A partition without records for IDLE_PARTITION_TIMEOUT_SECONDS stops holding event time back
    (a quiet partition, or one that never gets data); when it wakes up behind the watermark, its
    frames are late. WATERMARK_MAX_DRIFT_SECONDS > 0 pauses partitions that run ahead of the
    slowest one by more than that (catch-up reads partitions evenly instead of one after another).
    """
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(
        Duration.of_seconds(int(settings.max_out_of_orderness_seconds))
    ).with_idleness(Duration.of_millis(int(settings.idle_partition_timeout_seconds * 1000)))
    if settings.watermark_max_drift_seconds > 0:
        strategy = strategy.with_watermark_alignment(
            "ecg-input", Duration.of_millis(int(settings.watermark_max_drift_seconds * 1000)), Duration.of_seconds(1)
        )
    return strategy


def throttled_turn_wait_seconds(settings: Any, partitions_per_reader: int) -> float:
    """How long a partition of a throttled reader can wait for its next turn while a backlog is read: the
    reader's consumer fetches every partition it owns at once and hands one partition's fetch (up to
    THROTTLED_PARTITION_FETCH_BYTES of frames) over before the next, so each other partition of the reader
    takes up to one full fetch at the reader's rate."""
    per_reader = settings.max_records_per_second / settings.parallelism
    turn_s = THROTTLED_PARTITION_FETCH_BYTES / SMALLEST_FRAME_BYTES / per_reader
    return max(0, partitions_per_reader - 1) * turn_s


def _admin_properties(settings: Any, client_id: str, timeout_s: float) -> Any:
    """java.util.Properties of a Java admin client with the job's bootstrap and security settings."""
    properties = get_gateway().jvm.java.util.Properties()
    for key, value in {
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": client_id,
        "request.timeout.ms": str(int(timeout_s * 1000)),
        "default.api.timeout.ms": str(int(timeout_s * 1000)),
        **client_properties(settings),
    }.items():
        properties.setProperty(key, value)
    return properties


def input_partition_count(settings: Any, timeout_s: float = 10.0) -> int | None:
    """Partitions of the input topic (the job's Java admin client and security settings); None when the broker
    does not answer in time or the topic does not exist yet."""
    from py4j.protocol import Py4JJavaError

    jvm = get_gateway().jvm
    admin = jvm.org.apache.kafka.clients.admin.Admin.create(_admin_properties(settings, "ecg-partition-count",
                                                                                timeout_s))
    try:
        names = jvm.java.util.ArrayList()
        names.add(settings.kafka_input_topic)
        description = admin.describeTopics(names).topicNameValues().get(settings.kafka_input_topic)
        return int(description.get(int(timeout_s), jvm.java.util.concurrent.TimeUnit.SECONDS).partitions().size())
    except Py4JJavaError:
        return None
    finally:
        admin.close(jvm.java.time.Duration.ofSeconds(5))


def throttled_hold_ms(settings: Any) -> int:
    """How long event time waits for a partition of a throttled source with records unread: 1.5 x its longest
    wait for a turn (throttled_turn_wait_seconds), so that a partition waiting for its turn is never left out
    and its frames never come late. Logged with a WARN when that is longer than the 60 s default: a throttled
    view then publishes a window only after every partition's turn, minutes behind its input."""
    partitions = input_partition_count(settings)
    per_reader = (-(-partitions // settings.parallelism) if partitions is not None
                  else ASSUMED_PARTITIONS_PER_READER)
    wait_s = throttled_turn_wait_seconds(settings, per_reader)
    hold_ms = round(1.5 * wait_s * 1000)
    if hold_ms > 60_000:
        log.warning(
            "MAX_RECORDS_PER_SECOND=%s over %s partitions per reader (%s): while a backlog is read, a partition "
            "may wait up to %.0f s for its turn (one fetch of %d KB per other partition, frames of %d bytes, at "
            "%.1f records/s per reader); event time waits up to %.0f s for it, so windows close that much later",
            settings.max_records_per_second, per_reader,
            "the input topic's" if partitions is not None else "assumed, topic not described",
            wait_s, THROTTLED_PARTITION_FETCH_BYTES // 1024, SMALLEST_FRAME_BYTES,
            settings.max_records_per_second / settings.parallelism, hold_ms / 1000)
    return hold_ms


def with_event_time_progress(stream: DataStream, settings: Any) -> DataStream:
    """Chain connectors/java/EventTimeProgress after the source (operators chain by default): it keeps the
    per-partition event-time progress in checkpoints and re-emits it after a restore (Flink does not
    checkpoint watermarks), and moves an idle input on even when the source does not report it idle, once the
    broker confirms that every partition is read to its end."""
    jvm = get_gateway().jvm
    operator_class = project_class(PROGRESS_CLASS)
    bound_ms = int(settings.max_out_of_orderness_seconds) * 1000
    # The source's idle timeout: the operator applies the source's idleness rule itself if the source
    # does not report idle in time (issue 19).
    idle_ms = round(settings.idle_partition_timeout_seconds * 1000)
    # An idle input is announced idle only this long after its last watermark: a Python operator forwards a
    # status at once but holds a watermark until its bundle ends, and an IDLE that overtakes the watermark
    # there loses it for everything downstream (issue 19). Several Python operators are on the way.
    announce_ms = max(10_000, 10 * int(settings.python_bundle_time_ms))
    # During a catch-up a watermark can wait in a slow operator's input queue far longer than that delay:
    # idle is announced only after a checkpoint taken behind the watermark has completed (aligned barriers
    # follow it through every operator).
    after_checkpoint = settings.checkpoint_interval_seconds > 0
    # All partitions idle is "nothing more to read" only when the broker says so: an unreachable broker
    # (an outage) idles the source too, and the all-idle jump then fired windows without their frames
    # (issue 20, item 4). The check asks the broker with the job's Kafka client settings.
    properties = jvm.java.util.HashMap()
    for key, value in client_properties(settings).items():
        properties.put(key, value)
    end_check = jvm.io.ecgflinkanon.connectors.InputEndCheck(settings.kafka_bootstrap, properties)
    # A partition the broker reports with records unread holds event time until it delivers, but not for good: a
    # reader that never comes back to it would stall the output. A throttled reader's turns are longer than that
    # at low rates (throttled_hold_ms).
    max_hold_ms = max(60_000, 6 * idle_ms)
    if settings.max_records_per_second > 0:
        max_hold_ms = max(max_hold_ms, throttled_hold_ms(settings))
    j_stream = stream._j_data_stream
    return DataStream(j_stream.transform(
        "event-time progress", j_stream.getType(),
        operator_class(bound_ms, idle_ms, announce_ms, after_checkpoint, end_check, max_hold_ms)))


def with_liveness_guard(stream: DataStream, settings: Any, downstream: str) -> DataStream:
    """Chain connectors/java/LivenessGuard after the source: it fails the task (the restart strategy then
    resumes from the last checkpoint) when the input has unread records but no record left the source for
    LIVENESS_TIMEOUT_SECONDS; `downstream` names the operators its error message suspects."""
    operator_class = project_class(GUARD_CLASS)
    timeout_ms = round(settings.liveness_timeout_seconds * 1000)
    properties = get_gateway().jvm.java.util.HashMap()
    for key, value in client_properties(settings).items():
        properties.put(key, value)
    j_stream = stream._j_data_stream
    return DataStream(j_stream.transform("liveness guard", j_stream.getType(),
                                         operator_class(settings.kafka_bootstrap, properties, timeout_ms, downstream)))


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
    for key, value in client_properties(settings).items():
        builder = builder.set_property(key, value)
    if exactly_once:
        builder = builder.set_transactional_id_prefix(transactional_id_prefix).set_property(
            "transaction.timeout.ms", str(settings.kafka_transaction_timeout_ms)
        )
    return builder.build()


class KafkaAccessError(RuntimeError):
    """The job cannot use Kafka with its settings (login refused, certificate not trusted, access denied): a
    one-line message for the operator. Raised at start by `check_kafka_access`, before the job runs."""


def _java_causes(error: Any) -> list[Any]:
    causes: list[Any] = []
    cause = error
    while cause is not None and len(causes) < 10:
        causes.append(cause)
        cause = cause.getCause()
    return causes


def check_kafka_access(settings: Any, topics: Sequence[str], timeout_s: float = 30.0) -> None:
    """Pre-flight check at job start, with the job's own Java client and security properties: log in to the
    broker and describe ``topics``. A refused SASL login, an untrusted broker certificate (or a refused client
    certificate) and a denied topic raise KafkaAccessError with one line saying which: Flink's Kafka source
    would otherwise fail, restart and fail again until the restart strategy gives up, minutes later. A broker
    that does not answer in ``timeout_s`` is only logged: the job starts and rides out the outage as usual."""
    from py4j.protocol import Py4JJavaError

    jvm = get_gateway().jvm
    properties = _admin_properties(settings, "ecg-preflight", timeout_s)
    security = KafkaSecurity.from_settings(settings)
    where = f"Kafka at {settings.kafka_bootstrap} ({security.security_protocol}"
    where += f", {security.sasl_mechanism} user {security.sasl_username!r})" if security.uses_sasl else ")"
    seconds = jvm.java.util.concurrent.TimeUnit.SECONDS
    admin = jvm.org.apache.kafka.clients.admin.Admin.create(properties)
    try:
        admin.describeCluster().nodes().get(int(timeout_s), seconds)
        names = jvm.java.util.ArrayList()
        for topic in topics:
            names.add(topic)
        described = admin.describeTopics(names).topicNameValues()
        for topic in topics:
            try:
                described.get(topic).get(int(timeout_s), seconds)
            except Py4JJavaError as error:
                kinds = [cause.getClass().getSimpleName() for cause in _java_causes(error.java_exception)]
                if "TopicAuthorizationException" in kinds:
                    raise KafkaAccessError(f"{where}: access to topic {topic!r} denied (missing ACL for this "
                                           "principal)") from None
                # A topic that does not exist yet is created by its first writer (or fails later, as before).
    except Py4JJavaError as error:
        causes = _java_causes(error.java_exception)
        kinds = [cause.getClass().getSimpleName() for cause in causes]
        detail = str(causes[-1].getMessage() or kinds[-1]).splitlines()[0]
        if "SaslAuthenticationException" in kinds:
            raise KafkaAccessError(f"{where}: SASL login refused (wrong user name or password?): {detail}") from None
        if "SslAuthenticationException" in kinds or "SSLHandshakeException" in kinds:
            trust = security.ssl_ca_file or "the JVM's default trust store"
            raise KafkaAccessError(f"{where}: TLS handshake failed (broker certificate not trusted by {trust}, "
                                   f"wrong host name, or client certificate refused): {detail}") from None
        if "ClusterAuthorizationException" in kinds or "AuthenticationException" in kinds:
            raise KafkaAccessError(f"{where}: {kinds[-1]}: {detail}") from None
        if "TimeoutException" in kinds:
            log.warning("%s: no answer within %.0f s (broker down, or KAFKA_SECURITY_PROTOCOL not the listener's); "
                        "starting anyway (the job retries)", where, timeout_s)
            return
        raise KafkaAccessError(f"{where}: {kinds[-1]}: {detail}") from None
    finally:
        admin.close(jvm.java.time.Duration.ofSeconds(5))
