"""Test-only helpers of the integration tests: one test's isolated topics and database, the checks a
privacy officer and the accounting run on the output, and leak scanning. The harness the benchmarks
share (job process, reference model, REST and Kafka helpers) is in testkit/."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.jobs import branch_args, job_args
from testkit.kafka_topics import read_topic
from testkit.readers import BelowKSampler as BelowKSampler  # the reader checks (benchmarks use them too)
from testkit.readers import visible_classes_below_k as visible_classes_below_k


def accounting_errors(metrics: dict[str, float]) -> list[str]:
    """The accounting invariant over the job's metrics; empty when every record is accounted for:
    input = control + dead-lettered + valid; valid = windowed + late; windowed = anonymized + pending;
    anonymized = published + suppressed."""
    m = {name: int(metrics.get(name, 0)) for name in (
        "records_in", "control_records", "dead_lettered", "frames_valid", "frames_windowed", "late_records",
        "frames_pending", "frames_anonymized", "frames_published", "frames_suppressed", "accounting_violations")}
    checks = {
        "records_in = control + dead_lettered + valid":
            m["records_in"] == m["control_records"] + m["dead_lettered"] + m["frames_valid"],
        "valid = windowed + late": m["frames_valid"] == m["frames_windowed"] + m["late_records"],
        "windowed = anonymized + pending": m["frames_windowed"] == m["frames_anonymized"] + m["frames_pending"],
        "anonymized = published + suppressed":
            m["frames_anonymized"] == m["frames_published"] + m["frames_suppressed"],
        "no accounting violation": m["accounting_violations"] == 0,
    }
    return [f"{name}: {m}" for name, ok in checks.items() if not ok]



def find_needles(haystacks: Iterable[tuple[str, bytes | str]], needles: Iterable[str]) -> list[str]:
    """`"<needle> in <where>"` for every needle found in every (where, content) pair.

    Content is searched as bytes for the needle's UTF-8 and for its ASCII-escaped JSON form
    (``J\\u00fcrgen``), so a needle inside JSON written with ensure_ascii or a binary file still hits."""
    import json

    forms = {
        needle: {needle.encode("utf-8"), json.dumps(needle, ensure_ascii=True)[1:-1].encode("ascii")}
        for needle in dict.fromkeys(needles) if needle
    }
    hits: list[str] = []
    for where, content in haystacks:
        data = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else bytes(content)
        hits.extend(f"{needle!r} in {where}" for needle, encoded in forms.items() if any(e in data for e in encoded))
    return hits



@dataclass
class IsolatedRun:
    """One test's own input topic, dead-letter topic and InfluxDB database on the shared local stack,
    and the job flags that point the job at them."""

    stack: Any
    raw_topic: str
    dlq_topic: str
    db: str
    checkpoint_dir: Path
    anomaly_topic: str = ""
    model_topic: str = ""

    @classmethod
    def create(cls, stack: Any, fresh_topics: Callable[..., list[str]], workdir: Path,
               partitions: int = 4) -> IsolatedRun:
        from devstack.influx_queries import create_database_v1

        (raw_topic,) = fresh_topics("ecg-raw", partitions=partitions)
        dlq_topic, anomaly_topic, model_topic = fresh_topics("ecg-dlq", "ecg-anomalies", "ecg-model-updates",
                                                             partitions=1)
        db = "t_" + uuid.uuid4().hex[:10]
        create_database_v1(stack.influx_v1_url, db)
        return cls(stack, raw_topic, dlq_topic, db, workdir / "checkpoints", anomaly_topic, model_topic)

    def job_args(self, *extra: str) -> list[str]:
        return job_args(self.stack, self.checkpoint_dir, "--influx-db", self.db,
                        "--kafka-input-topic", self.raw_topic, "--kafka-dlq-topic", self.dlq_topic,
                        *branch_args(self.anomaly_topic, self.model_topic), *extra)

    def anomalies(self) -> list[dict[str, Any]]:
        import json

        return [json.loads(r.value) for r in read_topic(self.stack.kafka_bootstrap, self.anomaly_topic)]

    def model_updates(self) -> list[dict[str, Any]]:
        import json

        return [json.loads(r.value) for r in read_topic(self.stack.kafka_bootstrap, self.model_topic)]

    def points(self, where: str | None = None) -> int:
        from devstack.influx_queries import count_points_v1

        return count_points_v1(self.stack.influx_v1_url, self.db, "ecg_anonymized", where=where)

    def points_by_level(self) -> Counter[int]:
        from devstack.influx_queries import query_v1

        rows = query_v1(self.stack.influx_v1_url,
                        'SELECT count("ecg_mv") FROM "ecg_anonymized" GROUP BY "level"', self.db)
        return Counter({int(row["level"]): int(row["count"]) for row in rows})

    def dead_letters(self) -> list[Any]:
        return read_topic(self.stack.kafka_bootstrap, self.dlq_topic)

