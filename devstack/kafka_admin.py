"""Kafka administration for the local stack and tests: an admin client and topic creation."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from devstack.processes import StackError


def admin_client(bootstrap: str, client_config: Mapping[str, Any] | None = None) -> Any:
    """kafka-python admin client; ``client_config``: security keyword arguments (KafkaSecurity.kafka_python_config)."""
    from kafka import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="ecg-local-stack",
        request_timeout_ms=10_000,
        **dict(client_config or {}),
    )


def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    config: Mapping[str, str] | None = None,
    *,
    timeout: float = 30.0,
    client_config: Mapping[str, Any] | None = None,
) -> None:
    """Create missing topics (name -> partitions, replication 1) and wait for their metadata."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = admin_client(bootstrap, client_config)
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(name, int(parts), 1, topic_configs=dict(config or {}))
            for name, parts in topics.items()
            if name not in existing
        ]
        if new:
            try:
                admin.create_topics(new, timeout_ms=int(timeout * 1000))
            except TopicAlreadyExistsError:
                pass
        deadline = time.monotonic() + timeout
        while True:
            desc = {t["name"]: t for t in admin.describe_topics(list(topics))}
            ok = all(
                n in desc and desc[n].get("error_code", 0) == 0 and len(desc[n].get("partitions", [])) >= int(p)
                for n, p in topics.items()
            )
            if ok:
                return
            if time.monotonic() > deadline:
                raise StackError(f"topics not ready after {timeout}s: {desc}")
            time.sleep(0.1)
    finally:
        admin.close()
