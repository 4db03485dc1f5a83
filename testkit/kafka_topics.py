"""Kafka for checks: read whole topics with assign/seek (no consumer group, nothing committed), their
last offsets, and a producer for very large records."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any


def read_topic(bootstrap: str, topic: str, timeout: float = 5.0,
               isolation_level: str = "read_uncommitted") -> list[Any]:
    """All records of a topic (every partition, from the beginning) via assign/seek; ``read_committed``
    leaves out the records of aborted and open transactions."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000,
                             isolation_level=isolation_level)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assignment = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        consumer.assign(assignment)
        consumer.seek_to_beginning(*assignment)
        records: list[Any] = []
        idle_deadline = time.monotonic() + timeout
        while time.monotonic() < idle_deadline:
            batch = consumer.poll(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
            if batch:
                idle_deadline = time.monotonic() + timeout / 2
        return records
    finally:
        consumer.close()



class TransactionProbe:
    """Records in Kafka transactions not yet committed (open, or prepared and waiting for the commit), per
    topic: the high watermark (what a read_uncommitted reader can reach) minus the last stable offset (what
    a read_committed reader can reach). Two consumers, kept open for quick repeated probes; `close()` them."""

    def __init__(self, bootstrap: str, topics: Iterable[str]) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self._high = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_uncommitted")
        self._stable = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
        self._partitions = [TopicPartition(topic, partition) for topic in sorted(set(topics))
                            for partition in sorted(self._high.partitions_for_topic(topic) or set())]

    def open_records(self) -> dict[str, int]:
        if not self._partitions:
            return {}
        high = self._high.end_offsets(self._partitions)
        stable = self._stable.end_offsets(self._partitions)
        by_topic: dict[str, int] = {}
        for partition in self._partitions:
            by_topic[partition.topic] = by_topic.get(partition.topic, 0) + max(0, high[partition] - stable[partition])
        return by_topic

    def close(self) -> None:
        self._high.close()
        self._stable.close()


def last_offsets_of(bootstrap: str, topic: str) -> dict[int, int]:
    """Offset of the last record of each non-empty partition (the broker's end offsets, minus one)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        assignment = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        begin = consumer.beginning_offsets(assignment)
        end = consumer.end_offsets(assignment)
    finally:
        consumer.close()
    return {tp.partition: end[tp] - 1 for tp in assignment if end[tp] > begin[tp]}



def make_large_producer(bootstrap: str, max_request_size: int = 16 * 1024 * 1024) -> Any:
    """A kafka-python producer that can send the 10 MB corpus entry (acks=all, ordered)."""
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=max_request_size,
        max_in_flight_requests_per_connection=1, client_id="ecg-tests",
    )



def read_topics(bootstrap: str, topics: Iterable[str], timeout: float = 5.0,
                max_partition_fetch_bytes: int = 16 * 1024 * 1024) -> dict[str, list[Any]]:
    """All records of several topics (every partition, from the beginning) with one consumer.

    Fetch sizes allow the largest message the local broker takes, so no record is skipped."""
    from kafka import KafkaConsumer, TopicPartition

    wanted = sorted(set(topics))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000,
                             max_partition_fetch_bytes=max_partition_fetch_bytes,
                             fetch_max_bytes=4 * max_partition_fetch_bytes)
    try:
        assignment = [
            TopicPartition(topic, partition)
            for topic in wanted
            for partition in sorted(consumer.partitions_for_topic(topic) or set())
        ]
        records: dict[str, list[Any]] = {topic: [] for topic in wanted}
        if not assignment:
            return records
        consumer.assign(assignment)
        consumer.seek_to_beginning(*assignment)
        idle_deadline = time.monotonic() + timeout
        while time.monotonic() < idle_deadline:
            batch = consumer.poll(timeout_ms=500)
            for partition, partition_records in batch.items():
                records[partition.topic].extend(partition_records)
            if batch:
                idle_deadline = time.monotonic() + timeout / 2
        return records
    finally:
        consumer.close()



def list_topics(bootstrap: str) -> list[str]:
    from devstack.kafka_admin import admin_client

    admin = admin_client(bootstrap)
    try:
        return sorted(admin.list_topics())
    finally:
        admin.close()

