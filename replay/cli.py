"""``python -m replay``: re-process dead letters after a fix (README, "Replaying dead letters").

    python -m replay --reason missing_field --device dev-0042 --since 2025-11-22T12:00:00Z \\
        --fix mysite.fixes:rename_samples  [the job's own flags, e.g. --kafka-bootstrap ... --influx-db ...]

Every flag the tool does not know is a setting of the job (connectors/config.py; env and .env as for the job):
the tool reads the input, dead-letter and InfluxDB settings from them and runs the job with them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backfill.cli import create_staging_topic, delete_staging_topic, plan_staging, stage
from backfill.influx_input import InfluxReadError
from connectors.config import PROJECT_ROOT, ConfigError, Settings, load_settings, timestamp_ms
from connectors.kafka_acls import replay_group_prefix, replay_topic_prefix
from connectors.kafka_security import KafkaSecurity
from contract.frames import Control, Rejection, parse_frame
from privacy.dead_letters import DeadLetterError, mask_detail, open_raw
from replay import kafka_io
from replay.fixup import Fix, FixError, apply_fix, identity, load_fix
from replay.merge import InfluxQL, MergeReport, merge

log = logging.getLogger("ecg.replay")

JOB_MODULE = "flink_jobs.ecg_anonymization_job"
HEADER_SOURCE = "ecg-replay-of"
HEADER_FIX = "ecg-replay-fix"
HEADER_REASON = "ecg-replay-reason"
STATS_MEASUREMENT = "ecg_window_stats"
OUTCOMES = ("replayed", "would_replay", "already_replayed", "not_merged", "gone", "skipped", "fix_failed",
            "still_invalid")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m replay", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reason", action="append", default=[], help="select letters with this reason (repeatable)")
    parser.add_argument("--device", action="append", default=[], help="select letters of this device id (repeatable)")
    parser.add_argument("--since", help="select letters whose record timestamp is at or after this (ms or ISO 8601)")
    parser.add_argument("--until", help="select letters whose record timestamp is before this (ms or ISO 8601)")
    parser.add_argument("--fix", help="module:function applied to each original (replay/fixup.py)")
    parser.add_argument("--force", action="store_true",
                        help="replay letters already in the corrections topic again (the new fix replaces theirs)")
    parser.add_argument("--corrections-topic", help="corrections log (default: <KAFKA_INPUT_TOPIC>.replay-corrections)")
    parser.add_argument("--merge-until", default=None,
                        help="'auto' (default): windows every input partition is past by MAX_OUT_OF_ORDERNESS_SECONDS;"
                             " 'end': the input has ended, every window; or a timestamp: windows before it "
                             "(default with --influx-backfill-*: its --to)")
    parser.add_argument("--influx-backfill-from", help="replay the dead letters of the InfluxDB backfill "
                        "(python -m backfill) of this --from ... ")
    parser.add_argument("--influx-backfill-to", help="... and this --to: its range is staged again from the input "
                        "database (INFLUX_INPUT_*) for the originals, and deleted at the end")
    parser.add_argument("--influx-backfill-partitions", type=int, default=0,
                        help="the partitions that backfill staged into (its --partitions; it prints them)")
    parser.add_argument("--dry-run", action="store_true", help="select, fetch and fix, report; write nothing")
    parser.add_argument("--work-dir", help="logs and checkpoints of the rebuild (default .run/replay/<run id>)")
    parser.add_argument("--keep-staging", action="store_true", help="keep the staging topic and database")
    parser.add_argument("--job-timeout-seconds", type=float, default=3600.0,
                        help="the rebuild job must end within this")
    parser.add_argument("--report", help="write the summary as JSON to this file")
    return parser


@dataclass
class LetterResult:
    partition: int
    offset: int
    reason: str
    outcome: str
    note: str = ""


@dataclass
class Summary:
    run_id: str
    letters_read: int = 0
    letters_distinct: int = 0
    selected: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    letters: list[LetterResult] = field(default_factory=list)
    corrections_written: int = 0
    corrections_total: int = 0
    rebuild: dict[str, Any] = field(default_factory=dict)
    merge: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def count(self) -> None:
        counts = Counter(letter.outcome for letter in self.letters)
        self.outcomes = {outcome: counts.get(outcome, 0) for outcome in OUTCOMES}

    def text(self) -> str:
        lines = [f"replay {self.run_id}: {self.letters_read} letters read, {self.letters_distinct} distinct positions, "
                 f"{self.selected} selected"]
        lines += [f"  {letter.partition}/{letter.offset} {letter.reason}: {letter.outcome}"
                  + (f" ({letter.note})" if letter.note else "") for letter in self.letters]
        lines.append("outcomes: " + ", ".join(f"{name} {count}" for name, count in self.outcomes.items()))
        lines.append(f"corrections: {self.corrections_written} written, {self.corrections_total} in the log")
        if self.rebuild:
            lines.append("rebuild: " + ", ".join(f"{key} {value}" for key, value in self.rebuild.items()))
        if self.merge:
            lines.append("merge: " + ", ".join(f"{key} {value}" for key, value in self.merge.items()))
        lines += [f"WARNING: {warning}" for warning in self.warnings]
        return "\n".join(lines)


def position_key(topic: str, partition: int, offset: int) -> str:
    return f"{topic}/{partition}/{offset}"


def read_letters(settings: Settings, summary: Summary) -> dict[tuple[int, int], dict[str, Any]]:
    """The dead letters of the input topic by source position (the DLQ is at-least-once: one per position)."""
    snapshot = kafka_io.read_topic(settings.kafka_bootstrap, settings.kafka_dlq_topic,
                                   security=KafkaSecurity.from_settings(settings))
    letters: dict[tuple[int, int], dict[str, Any]] = {}
    for records in snapshot.records.values():
        for record in records:
            summary.letters_read += 1
            try:
                letter = json.loads(record.value)
                if letter.get("topic") != settings.kafka_input_topic:
                    continue
                letters.setdefault((int(letter["partition"]), int(letter["offset"])), letter)
            except (TypeError, ValueError, KeyError, AttributeError):
                continue
    summary.letters_distinct = len(letters)
    return letters


def select(letters: dict[tuple[int, int], dict[str, Any]], args: argparse.Namespace) -> list[tuple[int, int]]:
    since = timestamp_ms(args.since) if args.since else None
    until = timestamp_ms(args.until) if args.until else None
    chosen = []
    for position, letter in sorted(letters.items()):
        stamp = letter.get("timestamp")
        if args.reason and letter.get("reason") not in args.reason:
            continue
        if args.device and letter.get("device_id") not in args.device:
            continue
        if since is not None and (stamp is None or int(stamp) < since):
            continue
        if until is not None and (stamp is None or int(stamp) >= until):
            continue
        chosen.append(position)
    return chosen


def read_corrections(bootstrap: str, topic: str, input_topic: str, security: KafkaSecurity | None = None
                     ) -> dict[tuple[int, int], tuple[bytes, int]]:
    """The corrections log: (partition, offset) of the input -> (message, record timestamp); the last one wins."""
    corrections: dict[tuple[int, int], tuple[bytes, int]] = {}
    try:
        snapshot = kafka_io.read_topic(bootstrap, topic, security=security)
    except kafka_io.MissingTopicError:
        return corrections  # no replay yet (a dry run does not create the topic)
    for records in snapshot.records.values():
        for record in records:
            source, _, rest = (record.key or b"").decode("utf-8", "replace").partition("/")
            if source != input_topic or record.value is None:
                continue
            partition, _, offset = rest.partition("/")
            corrections[(int(partition), int(offset))] = (bytes(record.value), int(record.timestamp))
    return corrections


def original_of(letter: dict[str, Any], found: Any, settings: Settings) -> tuple[bytes | None, str]:
    """The original message (from the input, else from the sealed copy) or None and why it is gone."""
    if not isinstance(found, str):
        value = b"" if found.value is None else bytes(found.value)
        if (letter.get("raw_bytes") is not None and letter.get("timestamp") is not None
                and (len(value) != int(letter["raw_bytes"]) or int(found.timestamp) != int(letter["timestamp"]))):
            # An input staged again (--influx-backfill-*) from a database that changed since the backfill.
            return None, "the record at this position is not the letter's original (another size or timestamp)"
        return value, ""
    if letter.get("raw") is None:
        return None, f"original {found}; the letter holds no raw copy (DLQ_RAW=none)"
    keys = {settings.dlq_raw_key_id: settings.dlq_raw_key} if settings.dlq_raw_key else {}
    try:
        return open_raw(letter, keys), ""
    except DeadLetterError as error:
        return None, f"original {found}; its raw copy does not open: {error}"


def validate(message: bytes, timestamp: int, settings: Settings) -> str:
    """'' when the job will accept the message, else the contract's reason (never a value)."""
    try:
        parsed = parse_frame(message, timestamp, group_field=settings.group_field,
                             ts_tolerance_ms=settings.ts_tolerance_seconds * 1000)
    except Exception as error:  # noqa: BLE001
        return f"internal_error ({type(error).__name__})"
    if isinstance(parsed, Control):
        return "a control record, not a frame"
    if isinstance(parsed, Rejection):
        try:
            obj = json.loads(message)
        except ValueError:
            obj = None
        return f"{parsed.reason}: {mask_detail(parsed.detail, obj if isinstance(obj, dict) else None)}"
    return ""


Message = tuple[str, int | None, bytes | None, bytes | None, int, list[tuple[str, bytes]]]


def collect(settings: Settings, args: argparse.Namespace, fix: Fix, corrections_topic: str, summary: Summary
            ) -> tuple[list[Message], dict[tuple[int, int], tuple[bytes, int]]]:
    """Select letters, fetch and fix their originals: the new corrections to write, and the log as it was."""
    letters = read_letters(settings, summary)
    chosen = select(letters, args)
    summary.selected = len(chosen)
    corrections = read_corrections(settings.kafka_bootstrap, corrections_topic, settings.kafka_input_topic,
                                   KafkaSecurity.from_settings(settings))
    todo = {position for position in chosen if args.force or position not in corrections}
    found = kafka_io.read_positions(settings.kafka_bootstrap, settings.kafka_input_topic, todo,
                                   KafkaSecurity.from_settings(settings))
    new: list[Message] = []
    for position in chosen:
        letter = letters[position]
        result = LetterResult(position[0], position[1], str(letter.get("reason")), "")
        summary.letters.append(result)
        if position not in todo:
            result.outcome, result.note = "already_replayed", "in the corrections log (--force replays it again)"
            continue
        original, why = original_of(letter, found[position], settings)
        if original is None:
            result.outcome, result.note = "gone", why
            continue
        fixed = apply_fix(fix, original)
        if fixed.message is None:
            result.outcome, result.note = fixed.outcome, fixed.note
            continue
        record = found[position]
        stamp = (int(letter["timestamp"]) if letter.get("timestamp") is not None
                 else int(getattr(record, "timestamp", 0)))
        rejected = validate(fixed.message, stamp, settings)
        if rejected:
            result.outcome, result.note = "still_invalid", rejected
            continue
        result.outcome = "replayed"
        key = position_key(settings.kafka_input_topic, *position)
        new.append((corrections_topic, None, key.encode(), fixed.message, stamp,
                    [(HEADER_SOURCE, key.encode()), (HEADER_FIX, fix.name.encode()),
                     (HEADER_REASON, str(letter.get("reason")).encode())]))
    return new, corrections


def merge_range(settings: Settings, copy: kafka_io.CopyReport, until: str, summary: Summary) -> tuple[int, int]:
    """[from, until) in ms of the windows the rebuild may replace: complete in the input it read, and already
    anonymized by the live job (see the README)."""
    window = settings.window_seconds * 1000
    busy = [p for p in copy.end if copy.end[p] > copy.begin[p] and p in copy.first_ts]
    if not busy:
        return 0, 0
    start = min(copy.first_ts[p] for p in busy)
    start -= start % window
    truncated = [p for p in busy if copy.begin[p] > 0]
    if truncated:
        # Retention (or delete-records) removed the head of these partitions: the window of their first
        # retained record may have lost frames, and the rebuild's state starts there, not at the stream's start.
        first = max(copy.first_ts[p] - copy.first_ts[p] % window + window for p in truncated)
        start = max(start, first)
        summary.warnings.append(
            "the input no longer holds the start of the stream (partitions " + ", ".join(map(str, truncated))
            + " were truncated): windows are re-anonymized with the history the input still has, windows before "
            f"{first} ms are not merged")
    if until == "end":
        last = max(copy.last_ts[p] for p in busy)
        stop = last - last % window + 2 * window  # and the next window: a frame's samples may run into it
    elif until == "auto":
        last = min(copy.last_ts[p] for p in busy) - settings.max_out_of_orderness_seconds * 1000
        stop = last - last % window
    else:
        stamp = timestamp_ms(until)
        if stamp is None:
            raise ConfigError(f"--merge-until {until!r}: expected auto, end or a timestamp")
        stop = stamp - stamp % window
    return start, max(start, stop)


def job_command(job_argv: Sequence[str], settings: Settings, run_id: str, staging_topic: str, staging_db: str,
                work_dir: Path) -> list[str]:
    """The job as a bounded backfill of the staging topic into the staging database (the later flags win)."""
    return [sys.executable, "-m", JOB_MODULE, *job_argv,
            "--kafka-input-topic", staging_topic, "--kafka-dlq-topic", staging_topic + ".dlq",
            "--kafka-starting-offsets", "earliest", "--kafka-stop-at", "latest", "--cardio-branch", "false",
            "--kafka-group-id", replay_group_prefix(settings.kafka_group_id) + run_id,
            "--job-name", f"{settings.job_name}-replay",
            "--checkpoint-dir", str(work_dir / "checkpoints"), "--from-checkpoint=", "--web-ui-port=",
            "--cardio-web-ui-port=", "--csv-output-dir=", "--output", "influxdb", "--influx-db", staging_db,
            "--kafka-delivery", "at-least-once"]


def rebuild_and_merge(settings: Settings, args: argparse.Namespace, job_argv: Sequence[str],
                      corrections: dict[tuple[int, int], tuple[bytes, int]], summary: Summary) -> int:
    run_id = summary.run_id
    work_dir = Path(args.work_dir) if args.work_dir else PROJECT_ROOT / ".run" / "replay" / run_id
    work_dir.mkdir(parents=True, exist_ok=True)
    staging_topic = replay_topic_prefix(settings.kafka_input_topic) + run_id
    staging_db = f"{settings.influx_db}_replay_{run_id}"
    bootstrap = settings.kafka_bootstrap
    live = InfluxQL(settings.influx_url, settings.influx_db, settings.influx_username, settings.influx_password,
                    settings.influx_rp)
    staging = InfluxQL(settings.influx_url, staging_db, settings.influx_username, settings.influx_password)
    security = KafkaSecurity.from_settings(settings)
    client = kafka_io.consumer(bootstrap, security)
    try:
        partitions = len(kafka_io.partitions_of(client, settings.kafka_input_topic))
    finally:
        client.close()
    config = {"max.message.bytes": str(kafka_io.MAX_MESSAGE_BYTES)}
    try:
        kafka_io.ensure_topic(bootstrap, staging_topic, partitions, config, security)
        kafka_io.ensure_topic(bootstrap, staging_topic + ".dlq", 1, config, security)
        copy = kafka_io.copy_with_corrections(bootstrap, settings.kafka_input_topic, staging_topic,
                                              {position: value for position, (value, _) in corrections.items()},
                                              security)
        start_ms, stop_ms = merge_range(settings, copy, args.merge_until, summary)
        summary.rebuild = {"records": copy.copied, "corrections_in_place": len(copy.replaced),
                           "merge_from_ms": start_ms, "merge_until_ms": stop_ms}
        for letter in summary.letters:
            stamp = corrections.get((letter.partition, letter.offset), (b"", None))[1]
            if letter.outcome in ("replayed", "already_replayed") and (
                    (letter.partition, letter.offset) not in copy.replaced or stamp is None
                    or not start_ms <= stamp < stop_ms):
                letter.outcome = "not_merged"
                letter.note = ("its position is no longer in the input" if (letter.partition, letter.offset)
                               not in copy.replaced else "its window is outside the merged range "
                               f"[{start_ms}, {stop_ms}) ms; in the corrections log for a later replay")
        staging.query(f'CREATE DATABASE "{staging_db}"', db=False)
        command = job_command(job_argv, settings, run_id, staging_topic, staging_db, work_dir)
        environment = dict(os.environ, FLINK_LOG_DIR=str(work_dir / "flink-logs"))
        print(f"rebuild: the job re-anonymizes {copy.copied} records ({len(copy.replaced)} corrected) into "
              f"{staging_db}; log {work_dir / 'job.log'}", flush=True)
        with (work_dir / "job.log").open("ab") as job_log:
            process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=environment, stdout=job_log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            try:
                returncode = process.wait(timeout=args.job_timeout_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=60)
                returncode = -1
        if returncode != 0:
            print(f"rebuild failed (exit {returncode}): see {work_dir / 'job.log'}; nothing merged", file=sys.stderr)
            return 1
        report: MergeReport = merge(live, staging, settings.influx_measurement, STATS_MEASUREMENT,
                                    start_ms * 1_000_000, stop_ms * 1_000_000, settings.window_seconds * 1_000_000_000,
                                    k=settings.k_anonymity, max_points=settings.influx_batch_points)
        summary.merge = asdict(report)
        return 0
    finally:
        shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)
        if not args.keep_staging:
            try:
                staging.query(f'DROP DATABASE "{staging_db}"', db=False)
            except Exception as error:  # noqa: BLE001
                summary.warnings.append(f"staging database {staging_db} not dropped: {type(error).__name__}")
            kafka_io.delete_topics(bootstrap, [staging_topic, staging_topic + ".dlq"], security)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args, job_argv = build_parser().parse_known_args(argv)
    try:
        settings = load_settings(job_argv)
        fix = load_fix(args.fix) if args.fix else identity()
        for value in (args.since, args.until):
            timestamp_ms(value) if value else None
    except (ConfigError, FixError, ValueError) as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    if settings.output != "influxdb" or settings.influx_transport != "v1":
        print("configuration error: replay merges into InfluxDB through InfluxQL: it needs OUTPUT=influxdb and "
              "INFLUX_TRANSPORT=v1 (InfluxDB 1.x, or 2.x's v1 compatibility API is not supported yet)", file=sys.stderr)
        return 2
    corrections_topic = args.corrections_topic or replay_topic_prefix(settings.kafka_input_topic) + "corrections"
    if bool(args.influx_backfill_from) != bool(args.influx_backfill_to):
        print("configuration error: --influx-backfill-from and --influx-backfill-to go together", file=sys.stderr)
        return 2
    if not args.influx_backfill_from:
        return run(settings, args, job_argv, fix, corrections_topic, args.merge_until or "auto")
    return run_on_influx_backfill(settings, args, job_argv, fix, corrections_topic)


def run_on_influx_backfill(settings: Settings, args: argparse.Namespace, job_argv: Sequence[str], fix: Fix,
                           corrections_topic: str) -> int:
    """The letters of an InfluxDB backfill point into its staging topic, deleted when it ended: stage the same
    range again (the same topic, partitions and order, so the same positions) for the replay's input, run the
    replay on it, delete it. Corrections go to the input topic's log, keyed by the staging positions."""
    start_ms, stop_ms = timestamp_ms(args.influx_backfill_from), timestamp_ms(args.influx_backfill_to)
    try:
        if start_ms is None or stop_ms is None or stop_ms <= start_ms:
            raise ConfigError("--influx-backfill-from/--influx-backfill-to: two timestamps, --to after --from")
        plan = plan_staging(settings, start_ms, stop_ms)
        partitions = create_staging_topic(settings, plan.topic, args.influx_backfill_partitions)
    except (ConfigError, ValueError) as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    try:
        staged = stage(settings, plan.reader, plan.topic, start_ms, stop_ms, plan.slice_seconds)
        print(f"staged {staged} records of {plan.source} [{start_ms}, {stop_ms}) ms into {plan.topic} again "
              f"({partitions} partitions): the input of this replay, deleted at its end", flush=True)
        staged_input = dataclasses.replace(settings, values={**settings.values, "kafka_input_topic": plan.topic})
        return run(staged_input, args, job_argv, fix, corrections_topic, args.merge_until or str(stop_ms))
    except InfluxReadError as error:
        print(f"input error: {error}", file=sys.stderr)
        return 2
    finally:
        delete_staging_topic(settings, plan.topic)


def run(settings: Settings, args: argparse.Namespace, job_argv: Sequence[str], fix: Fix, corrections_topic: str,
        merge_until: str) -> int:
    args = argparse.Namespace(**{**vars(args), "merge_until": merge_until})
    summary = Summary(run_id=uuid.uuid4().hex[:8])
    if not args.dry_run:
        kafka_io.ensure_topic(settings.kafka_bootstrap, corrections_topic, 1,
                              {"cleanup.policy": "compact", "max.message.bytes": str(kafka_io.MAX_MESSAGE_BYTES)},
                              KafkaSecurity.from_settings(settings))
    new, corrections = collect(settings, args, fix, corrections_topic, summary)
    status = 0
    if args.dry_run:
        for letter in summary.letters:
            if letter.outcome == "replayed":
                letter.outcome, letter.note = "would_replay", "dry run: nothing written"
    else:
        summary.corrections_written = kafka_io.send_all(settings.kafka_bootstrap, new,
                                                        KafkaSecurity.from_settings(settings))
        corrections = read_corrections(settings.kafka_bootstrap, corrections_topic, settings.kafka_input_topic,
                                   KafkaSecurity.from_settings(settings))
        if corrections:
            status = rebuild_and_merge(settings, args, job_argv, corrections, summary)
    summary.corrections_total = len(corrections)
    summary.count()
    print(summary.text(), flush=True)
    if args.report:
        Path(args.report).write_text(json.dumps(asdict(summary), indent=1) + "\n", encoding="utf-8")
    return status
