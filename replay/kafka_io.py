"""Plain Kafka clients of the replay tool (kafka-python): read a topic to its end, read records by position,
write the corrections log, copy the input with the corrections in place."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.kafka_security import KafkaSecurity

# The largest message the job's topics take (kafka-init / local stack: max.message.bytes=16777216).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CLIENT_ID = "ecg-replay"
READ_IDLE_SECONDS = 30.0


class ReplayKafkaError(RuntimeError):
    pass


class MissingTopicError(ReplayKafkaError):
    pass


def _secured(security: KafkaSecurity | None) -> dict[str, Any]:
    # The job's KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_* / KAFKA_SSL_* settings (README, "Secured Kafka"); in the
    # secured stack the tool's principal is the replay user of connectors/kafka_acls.py.
    return (security or KafkaSecurity()).kafka_python_config()


def consumer(bootstrap: str, security: KafkaSecurity | None = None) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=bootstrap, client_id=CLIENT_ID, group_id=None, enable_auto_commit=False,
                         isolation_level="read_committed", max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
                         fetch_max_bytes=4 * MAX_MESSAGE_BYTES, **_secured(security))


def producer(bootstrap: str, security: KafkaSecurity | None = None) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, client_id=CLIENT_ID, acks="all", linger_ms=5,
                         max_request_size=MAX_MESSAGE_BYTES, max_in_flight_requests_per_connection=1,
                         enable_idempotence=True, **_secured(security))


def admin(bootstrap: str, security: KafkaSecurity | None = None) -> Any:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id=CLIENT_ID, request_timeout_ms=30_000,
                            **_secured(security))


def partitions_of(client: Any, topic: str) -> list[Any]:
    from kafka import TopicPartition

    found = client.partitions_for_topic(topic)
    if not found:
        raise MissingTopicError(f"topic {topic!r} does not exist")
    return [TopicPartition(topic, partition) for partition in sorted(found)]


@dataclass
class TopicSnapshot:
    """A topic's records from its first retained offset up to its end when it was read."""

    begin: dict[int, int] = field(default_factory=dict)
    end: dict[int, int] = field(default_factory=dict)
    records: dict[int, list[Any]] = field(default_factory=dict)


def _scan_to_end(client: Any, topic: str) -> tuple[dict[int, int], dict[int, int], Iterator[tuple[int, list[Any]]]]:
    """(first retained offsets, end offsets now, the records below those end offsets as (partition, records)
    batches in poll order, partitions in order within a batch). Raises when nothing comes for READ_IDLE_SECONDS
    before the end offsets."""
    assignment = partitions_of(client, topic)
    begin = {tp.partition: int(o) for tp, o in client.beginning_offsets(assignment).items()}
    end = {tp.partition: int(o) for tp, o in client.end_offsets(assignment).items()}

    def batches() -> Iterator[tuple[int, list[Any]]]:
        client.assign(assignment)
        client.seek_to_beginning(*assignment)
        pending = {tp for tp in assignment if end[tp.partition] > begin[tp.partition]}
        idle_deadline = time.monotonic() + READ_IDLE_SECONDS
        while pending:
            batch = client.poll(timeout_ms=500)
            for tp, records in sorted(batch.items(), key=lambda item: item[0].partition):
                yield tp.partition, [r for r in records if r.offset < end[tp.partition]]
            if batch:
                idle_deadline = time.monotonic() + READ_IDLE_SECONDS
            pending = {tp for tp in pending if client.position(tp) < end[tp.partition]}
            if pending and time.monotonic() > idle_deadline:
                raise ReplayKafkaError(f"{topic}: no progress for {READ_IDLE_SECONDS:.0f} s before the end offsets")

    return begin, end, batches()


def read_topic(bootstrap: str, topic: str, *, keep: bool = True, security: KafkaSecurity | None = None
               ) -> TopicSnapshot:
    """Every committed record of ``topic`` (read_committed), from the first retained offset to the end offsets
    the broker reports at the start. ``keep=False``: positions only (records are not kept)."""
    client = consumer(bootstrap, security)
    try:
        begin, end, batches = _scan_to_end(client, topic)
        snapshot = TopicSnapshot(begin=begin, end=end, records={partition: [] for partition in end})
        for partition, records in batches:
            if keep:
                snapshot.records[partition].extend(records)
        return snapshot
    finally:
        client.close()


def read_positions(bootstrap: str, topic: str, positions: Iterable[tuple[int, int]],
                   security: KafkaSecurity | None = None) -> dict[tuple[int, int], Any]:
    """The record at each (partition, offset) of ``topic``, or a text saying why there is none (deleted by
    retention or delete-records, beyond the end, not a readable record there)."""
    from kafka import TopicPartition

    wanted: dict[int, set[int]] = {}
    for partition, offset in positions:
        wanted.setdefault(partition, set()).add(offset)
    found: dict[tuple[int, int], Any] = {}
    if not wanted:
        return found
    client = consumer(bootstrap, security)
    try:
        existing = {tp.partition for tp in partitions_of(client, topic)}
        for partition, offsets in sorted(wanted.items()):
            if partition not in existing:
                found.update({(partition, o): "partition does not exist" for o in offsets})
                continue
            tp = TopicPartition(topic, partition)
            begin = int(client.beginning_offsets([tp])[tp])
            end = int(client.end_offsets([tp])[tp])
            client.assign([tp])
            for offset in sorted(offsets):
                if offset < begin:
                    found[(partition, offset)] = f"deleted (the partition now starts at offset {begin})"
                elif offset >= end:
                    found[(partition, offset)] = f"beyond the end of the partition (offset {end})"
                else:
                    found[(partition, offset)] = _record_at(client, tp, offset)
        return found
    finally:
        client.close()


def _record_at(client: Any, tp: Any, offset: int) -> Any:
    client.seek(tp, offset)
    deadline = time.monotonic() + READ_IDLE_SECONDS
    while time.monotonic() < deadline:
        for record in client.poll(timeout_ms=500).get(tp, []):
            if record.offset == offset:
                return record
            if record.offset > offset:
                return "no record at that offset (compacted, aborted or a transaction marker)"
        if client.position(tp) > offset:
            return "no record at that offset (compacted, aborted or a transaction marker)"
    return "not readable within 30 s"


def ensure_topic(bootstrap: str, topic: str, partitions: int, config: Mapping[str, str],
                 security: KafkaSecurity | None = None) -> None:
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    client = admin(bootstrap, security)
    try:
        if topic not in set(client.list_topics()):
            replication = max(1, min(3, len(client.describe_cluster().get("brokers", []))))
            try:
                client.create_topics([NewTopic(topic, partitions, replication, topic_configs=dict(config))],
                                     timeout_ms=30_000)
            except TopicAlreadyExistsError:
                pass
        deadline = time.monotonic() + 30
        while True:
            described = {t["name"]: t for t in client.describe_topics([topic])}
            entry = described.get(topic, {})
            if entry.get("error_code", 0) == 0 and len(entry.get("partitions", [])) >= partitions:
                return
            if time.monotonic() > deadline:
                raise ReplayKafkaError(f"topic {topic!r} not ready after 30 s")
            time.sleep(0.2)
    finally:
        client.close()


def delete_topics(bootstrap: str, topics: Iterable[str], security: KafkaSecurity | None = None) -> None:
    client = admin(bootstrap, security)
    try:
        existing = set(client.list_topics())
        doomed = [topic for topic in topics if topic in existing]
        if doomed:
            client.delete_topics(doomed, timeout_ms=30_000)
    finally:
        client.close()


@dataclass
class CopyReport:
    """What ``copy_with_corrections`` read: per partition the first retained offset, the end offset, the first and
    last record timestamps; records copied and replaced by a correction."""

    begin: dict[int, int] = field(default_factory=dict)
    end: dict[int, int] = field(default_factory=dict)
    first_ts: dict[int, int] = field(default_factory=dict)
    last_ts: dict[int, int] = field(default_factory=dict)
    copied: int = 0
    replaced: set[tuple[int, int]] = field(default_factory=set)


def copy_with_corrections(bootstrap: str, source: str, target: str, corrections: Mapping[tuple[int, int], bytes],
                          security: KafkaSecurity | None = None) -> CopyReport:
    """Copy ``source`` (read_committed, up to its end offsets now) to ``target`` partition by partition, in offset
    order, with record keys and timestamps; the value at a corrected (partition, offset) is the correction's."""
    client = consumer(bootstrap, security)
    out = producer(bootstrap, security)
    report = CopyReport()
    futures: list[Any] = []
    try:
        report.begin, report.end, batches = _scan_to_end(client, source)
        for partition, records in batches:
            for record in records:
                position = (partition, record.offset)
                value = corrections.get(position, record.value)
                if position in corrections:
                    report.replaced.add(position)
                report.first_ts.setdefault(partition, int(record.timestamp))
                report.last_ts[partition] = int(record.timestamp)
                futures.append(out.send(target, value=value, key=record.key, partition=partition,
                                        timestamp_ms=record.timestamp))
                report.copied += 1
            if len(futures) > 10_000:
                out.flush(timeout=300)
                for future in futures:
                    future.get(timeout=60)
                futures = []
        out.flush(timeout=300)
        for future in futures:
            future.get(timeout=60)
        return report
    finally:
        out.close(timeout=30)
        client.close()


def send_all(bootstrap: str, messages: Iterable[tuple[str, int | None, bytes | None, bytes | None, int,
                                                     list[tuple[str, bytes]]]],
             security: KafkaSecurity | None = None) -> int:
    """Produce (topic, partition, key, value, timestamp ms, headers) in order (acks=all, idempotent); the count.
    Raises on the first failed send."""
    client = producer(bootstrap, security)
    futures = []
    try:
        for topic, partition, key, value, timestamp_ms, headers in messages:
            futures.append(client.send(topic, value=value, key=key, partition=partition, timestamp_ms=timestamp_ms,
                                       headers=headers or None))
        client.flush(timeout=300)
        for future in futures:
            future.get(timeout=60)
        return len(futures)
    finally:
        client.close(timeout=30)
