"""``python -m backfill``: a one-time backfill from raw ECG frames stored in InfluxDB (README, "Backfill").

    python -m backfill --influx-input-db ecg_input --from 2025-11-22T12:00:00Z --to 2025-11-22T13:00:00Z \\
        [the job's own flags, e.g. --kafka-bootstrap ... --influx-db ... --k-anonymity 10]

1. Stage: read [--from, --to) from the input database in slices of INFLUX_INPUT_SLICE_SECONDS and write each
   stored message, exactly as it came in (key, value, record timestamp), into a staging topic.
2. Run the job as a Kafka backfill (KAFKA_STOP_AT=latest) of the staging topic: the same parse, contract
   validation, dead letters (KAFKA_DLQ_TOPIC), windows, k-anonymity and sinks as streaming mode.
3. Delete the staging topic (a copy of raw patient data), also when the job failed (--keep-staging: keep it).

Every flag the tool does not know is a setting of the job (connectors/config.py; env and .env as for the job).
Exit codes: 0 done, 1 the job failed, 2 configuration or input error.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backfill.influx_input import InfluxInputOptions, InfluxReadError, RawReader, make_reader, time_slices
from connectors.config import PROJECT_ROOT, ConfigError, Settings, load_settings, timestamp_ms
from connectors.influxdb import InfluxOptions
from connectors.kafka_security import KafkaSecurity

log = logging.getLogger("ecg.backfill")

JOB_MODULE = "flink_jobs.ecg_anonymization_job"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # the job's topics take this much (kafka-init / local stack)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backfill", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="start", required=True,
                        help="first record timestamp to backfill, inclusive (epoch ms or ISO 8601, UTC by default)")
    parser.add_argument("--to", dest="stop", required=True, help="end of the range, exclusive (epoch ms or ISO 8601)")
    parser.add_argument("--partitions", type=int, default=0,
                        help="partitions of the staging topic (default: as many as KAFKA_INPUT_TOPIC has, else 1)")
    parser.add_argument("--work-dir", help="job log and checkpoints (default .run/backfill/<staging topic>)")
    parser.add_argument("--keep-staging", action="store_true", help="keep the staging topic at the end")
    parser.add_argument("--job-timeout-seconds", type=float, default=24 * 3600.0,
                        help="stop the job (exit 1) when it has not ended after this long")
    return parser


def staging_topic_name(settings: Settings, source: str, start_ms: int, stop_ms: int) -> str:
    """The same backfill always stages into the same topic (fresh each time, deleted at the end), so the
    dead letters of a re-run carry the same positions: duplicates the DLQ's readers already drop."""
    digest = hashlib.sha256(f"{settings.influx_url}|{source}|{start_ms}|{stop_ms}".encode()).hexdigest()[:12]
    return f"{settings.kafka_input_topic}.influx-backfill-{digest}"


@dataclass(frozen=True)
class StagingPlan:
    """What a backfill of [start_ms, stop_ms) stages, and where: the same range always gives the same topic."""

    source: str
    start_ms: int
    stop_ms: int
    topic: str
    reader: RawReader
    slice_seconds: int


def plan_staging(settings: Settings, start_ms: int, stop_ms: int) -> StagingPlan:
    """Also used by ``python -m replay --influx-backfill-*``, which stages the same range again to find the
    originals of this backfill's dead letters at their positions."""
    options = InfluxInputOptions.from_settings(settings)
    reader = make_reader(InfluxOptions.from_settings(settings), options)
    source = f"{settings.influx_transport}:{options.db or options.bucket}/{options.measurement}"
    return StagingPlan(source, start_ms, stop_ms, staging_topic_name(settings, source, start_ms, stop_ms), reader,
                       options.slice_seconds)


def job_command(job_argv: Sequence[str], settings: Settings, staging_topic: str, work_dir: Path) -> list[str]:
    """The job as a bounded backfill of the staging topic (the later flags win)."""
    suffix = staging_topic.rsplit(".", 1)[-1]
    return [sys.executable, "-m", JOB_MODULE, *job_argv,
            "--kafka-input-topic", staging_topic, "--kafka-starting-offsets", "earliest", "--kafka-stop-at", "latest",
            "--cardio-branch", "false", "--kafka-group-id", f"{settings.kafka_group_id}-{suffix}",
            "--kafka-transactional-id-prefix", f"{settings.kafka_transactional_id_prefix}-{suffix}",
            "--job-name", f"{settings.job_name}-{suffix}",
            "--checkpoint-dir", str(work_dir / "checkpoints"), "--from-checkpoint="]


def _kafka_config(settings: Settings) -> dict[str, Any]:
    return {"bootstrap_servers": settings.kafka_bootstrap, "client_id": "ecg-backfill",
            **KafkaSecurity.from_settings(settings).kafka_python_config()}


def _admin(settings: Settings) -> Any:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(request_timeout_ms=30_000, **_kafka_config(settings))


def create_staging_topic(settings: Settings, topic: str, partitions: int) -> int:
    """Create the staging topic; refuse when it exists (a backfill of the same range runs, or one was kept)."""
    from kafka.admin import NewTopic

    client = _admin(settings)
    try:
        existing = set(client.list_topics())
        if topic in existing:
            raise ConfigError(f"staging topic {topic} exists: the same backfill is running, or one was kept "
                              "(--keep-staging) or killed; delete that topic, then run again")
        if partitions < 1:
            described = client.describe_topics([settings.kafka_input_topic]) \
                if settings.kafka_input_topic in existing else []
            partitions = max(1, len(described[0].get("partitions", []))) if described else 1
        replication = max(1, min(3, len(client.describe_cluster().get("brokers", []))))
        client.create_topics([NewTopic(topic, partitions, replication,
                                       topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)})],
                             timeout_ms=30_000)
        return partitions
    finally:
        client.close()


def delete_staging_topic(settings: Settings, topic: str) -> None:
    """Delete it and wait until the broker no longer lists it (a re-run right after must not find it)."""
    client = _admin(settings)
    try:
        if topic in set(client.list_topics()):
            client.delete_topics([topic], timeout_ms=30_000)
        deadline = time.monotonic() + 60
        while topic in set(client.list_topics()) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        client.close()


def stage(settings: Settings, reader: RawReader, topic: str, start_ms: int, stop_ms: int, slice_seconds: int) -> int:
    """Copy [start, stop) slice by slice into ``topic``: key, value and timestamp as stored. Keyed records go
    where the default partitioner puts them (as the devices' own records); records without key to partition 0,
    so a re-run puts every record at the same position."""
    from kafka import KafkaProducer

    producer = KafkaProducer(acks="all", linger_ms=20, batch_size=256 * 1024, max_request_size=MAX_MESSAGE_BYTES,
                             max_in_flight_requests_per_connection=1, enable_idempotence=True,
                             **_kafka_config(settings))
    staged = 0
    try:
        for begin, end in time_slices(start_ms, stop_ms, slice_seconds):
            records = reader.read(begin, end)
            futures = [producer.send(topic, value=record.value, key=record.key,
                                     partition=None if record.key is not None else 0,
                                     timestamp_ms=record.timestamp_ms) for record in records]
            producer.flush(timeout=300)
            for future in futures:
                future.get(timeout=60)  # raises the send's error: never start the job on a partial copy
            staged += len(records)
            log.info("staged [%d, %d) ms: %d records", begin, end, len(records))
        return staged
    finally:
        producer.close(timeout=30)


def _consumer(settings: Settings) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(group_id=None, enable_auto_commit=False, isolation_level="read_committed",
                         max_partition_fetch_bytes=MAX_MESSAGE_BYTES, **_kafka_config(settings))


def dlq_end_offsets(settings: Settings) -> dict[int, int]:
    """The dead-letter topic's end offsets now (empty when it does not exist yet: the job creates it)."""
    from kafka import TopicPartition

    client = _consumer(settings)
    try:
        partitions = client.partitions_for_topic(settings.kafka_dlq_topic) or set()
        ends = client.end_offsets([TopicPartition(settings.kafka_dlq_topic, p) for p in partitions])
        return {tp.partition: int(offset) for tp, offset in ends.items()}
    finally:
        client.close()


def count_dead_letters(settings: Settings, staging_topic: str, since: dict[int, int]) -> int:
    """Dead letters written after ``since`` whose source position is in ``staging_topic`` (this backfill's)."""
    import json

    from kafka import TopicPartition

    client = _consumer(settings)
    try:
        partitions = sorted(client.partitions_for_topic(settings.kafka_dlq_topic) or set())
        assignment = [TopicPartition(settings.kafka_dlq_topic, p) for p in partitions]
        ends = {tp: int(offset) for tp, offset in client.end_offsets(assignment).items()}
        client.assign(assignment)
        for tp in assignment:
            client.seek(tp, since.get(tp.partition, 0))
        count, deadline = 0, time.monotonic() + 120
        while any(client.position(tp) < ends[tp] for tp in assignment) and time.monotonic() < deadline:
            for tp, records in client.poll(timeout_ms=500).items():
                for record in records:
                    try:
                        ours = record.offset < ends[tp] and json.loads(record.value).get("topic") == staging_topic
                    except (TypeError, ValueError, AttributeError):
                        ours = False
                    count += 1 if ours else 0
        return count
    finally:
        client.close()


def replay_hint(plan: StagingPlan, partitions: int) -> str:
    return (f"python -m replay --influx-backfill-from {plan.start_ms} --influx-backfill-to {plan.stop_ms} "
            f"--influx-backfill-partitions {partitions} --fix MODULE:FUNCTION [--dry-run] "
            "[the flags and settings of this backfill]")


def run_job(command: list[str], work_dir: Path, timeout: float) -> int:
    environment = dict(os.environ, FLINK_LOG_DIR=str(work_dir / "flink-logs"))
    with (work_dir / "job.log").open("ab") as job_log:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=environment, stdout=job_log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return -1
        finally:
            if process.poll() is None:  # timeout or Ctrl+C: the job's whole group (its JVM too) goes with it
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args, job_argv = build_parser().parse_known_args(argv)
    start_ms, stop_ms = timestamp_ms(args.start), timestamp_ms(args.stop)
    try:
        if start_ms is None or stop_ms is None:
            raise ConfigError("--from / --to: expected epoch ms or ISO 8601")
        if stop_ms <= start_ms:
            raise ConfigError("--to must be after --from")
        settings = load_settings(job_argv)
        plan = plan_staging(settings, start_ms, stop_ms)
        topic = plan.topic
        work_dir = Path(args.work_dir) if args.work_dir else PROJECT_ROOT / ".run" / "backfill" / topic
        command = job_command(job_argv, settings, topic, work_dir)
        load_settings(command[3:])  # the job's own check of the settings it will run with, before anything is written
    except (ConfigError, ValueError) as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    try:
        partitions = create_staging_topic(settings, topic, args.partitions)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    status = 0
    try:
        staged = stage(settings, plan.reader, topic, start_ms, stop_ms, plan.slice_seconds)
        print(f"staged {staged} records of {plan.source} [{start_ms}, {stop_ms}) ms into {topic} ({partitions} "
              "partitions)", flush=True)
        if staged:
            work_dir.mkdir(parents=True, exist_ok=True)
            print(f"backfill job: log {work_dir / 'job.log'}", flush=True)
            dlq_before = dlq_end_offsets(settings)
            returncode = run_job(command, work_dir, args.job_timeout_seconds)
            letters = count_dead_letters(settings, topic, dlq_before)
            if letters:
                # Their positions point into the staging topic deleted below; the originals stay in the input
                # database, where a replay stages the same range again (README "Backfill").
                print(f"WARNING: {letters} dead letters of this backfill in {settings.kafka_dlq_topic}: their "
                      f"positions are in {topic}, a copy of raw input that is deleted now; the originals stay in "
                      f"{plan.source}. After a fix, replay them with: {replay_hint(plan, partitions)}",
                      file=sys.stderr, flush=True)
            if returncode != 0:
                print(f"backfill job failed (exit {returncode}): see {work_dir / 'job.log'}", file=sys.stderr)
                status = 1
            else:
                print("backfill done", flush=True)
                shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)
    except InfluxReadError as error:
        print(f"input error: {error}", file=sys.stderr)
        status = 2
    finally:
        if not args.keep_staging:
            delete_staging_topic(settings, topic)
    return status
