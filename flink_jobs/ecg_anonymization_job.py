"""ECG anonymization job: Kafka -> parse/validate -> site windows -> k-anonymity -> InfluxDB.

Run locally (embedded mini cluster):   python -m flink_jobs.ecg_anonymization_job --help
Submit to a cluster:  flink run -py flink_jobs/ecg_anonymization_job.py -pyexec .venv/bin/python ...
"""

from __future__ import annotations

import getpass
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    # `flink run -py flink_jobs/ecg_anonymization_job.py` runs this file as a script.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyflink.common import Configuration, Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.util.java_utils import get_j_env_configuration, is_local_deployment

from connectors.checkpoints import resolve_recovery_path
from connectors.config import PROJECT_ROOT, SETTINGS, ConfigError, Settings, load_settings
from connectors.http_output import HttpOutputOptions
from connectors.influxdb import InfluxOptions
from connectors.jars import JarsError, pipeline_jars
from connectors.kafka import (
    KafkaAccessError,
    build_source,
    build_string_sink,
    check_kafka_access,
    partition_tracking,
    throttled,
    watermark_strategy,
    with_event_time_progress,
    with_liveness_guard,
)
from flink_jobs.shipping import job_packages, stage_packages
from hierarchy.loader import Hierarchy, HierarchyError, load_hierarchy
from operators.http_output import PostWindows
from operators.k_anonymity import LATE_FRAMES, KAnonymityWindows, WindowOptions
from operators.parse import DEAD_LETTER, ParseFrames, ParseOptions
from operators.sinks import CountDeadLetters, WriteWindows, dead_letter_reason
from operators.window_closes import with_window_closes
from privacy.dead_letters import DeadLetterOptions
from privacy.intake import IntakeOptions
from privacy.pseudonym import suppression_token_key

log = logging.getLogger("ecg.job")

# Where the jobs start (this one and the cardio branch's, flink_jobs/cardio_job.py, which builds its
# environment here): the packages shipped to the Python workers are the import closure of these modules.
ENTRY_MODULES = ("flink_jobs.ecg_anonymization_job", "flink_jobs.cardio_job")
# Upper bound of the job's parallelism after rescaling restores (key groups); fixed so that a
# checkpoint restores at any parallelism up to it.
MAX_PARALLELISM = 128


def flink_configuration(settings: Settings) -> Configuration:
    checkpoint_dir = settings.path("checkpoint_dir")
    config = Configuration()
    for key, value in {
        "pipeline.name": settings.job_name,
        "python.executable": settings.python_executable or sys.executable,
        "parallelism.default": str(settings.parallelism),
        "state.backend.type": "hashmap",
        "execution.checkpointing.interval": f"{int(settings.checkpoint_interval_seconds * 1000)} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.timeout": f"{int(settings.checkpoint_timeout_seconds * 1000)} ms",
        "execution.checkpointing.dir": checkpoint_dir.as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "3",
        "execution.checkpointing.tolerable-failed-checkpoints": "3",
        "python.fn-execution.bundle.size": str(settings.python_bundle_size),
        "python.fn-execution.bundle.time": str(settings.python_bundle_time_ms),
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": "1 s",
        "restart-strategy.exponential-delay.max-backoff": f"{int(settings.restart_max_backoff_seconds)} s",
        "restart-strategy.exponential-delay.backoff-multiplier": "2.0",
        "restart-strategy.exponential-delay.reset-backoff-threshold": "10 min",
        "restart-strategy.exponential-delay.jitter-factor": "0.1",
        "restart-strategy.exponential-delay.attempts-before-reset-backoff": str(settings.restart_attempts),
    }.items():
        config.set_string(key, value)
    if settings.web_ui_port:
        config.set_string("rest.bind-address", "127.0.0.1")
        config.set_string("rest.address", "127.0.0.1")
        config.set_string("rest.port", settings.web_ui_port)
        # Metrics over REST at most 1 s old instead of Flink's 10 s: readers of the counters (the web UI,
        # tests, benchmarks/throughput.py's clocks) see progress in time. Fetched only when asked for.
        config.set_string("metrics.fetcher.update-interval", "1000")
    recovery = resolve_recovery_path(settings.from_checkpoint, checkpoint_dir)
    if recovery is not None:
        config.set_string("execution.state-recovery.path", recovery.as_uri())
        log.info("resuming from checkpoint %s", recovery)
    return config


def intake_options(settings: Settings, hierarchy: Hierarchy) -> IntakeOptions:
    return IntakeOptions(
        secret=settings.pseudonym_secret_bytes,
        pid_hex_chars=settings.pseudonym_hex_chars,
        quasi_identifiers=hierarchy.quasi_identifiers,
        sensitive_attribute=settings.sensitive_attribute,
        scope_by_group=settings.pseudonym_scope == "group",
    )


def dead_letter_options(settings: Settings) -> DeadLetterOptions:
    return DeadLetterOptions(
        secret=settings.pseudonym_secret_bytes,
        pid_hex_chars=settings.pseudonym_hex_chars,
        scope_by_group=settings.pseudonym_scope == "group",
        group_field=settings.group_field,
        raw_mode=settings.dlq_raw,
        raw_key=settings.dlq_raw_key if settings.dlq_raw == "encrypted" else b"",
        raw_key_id=settings.dlq_raw_key_id,
    )


def guarded_input(env: StreamExecutionEnvironment, settings: Settings, downstream: str) -> DataStream:
    """Kafka source -> event-time progress -> liveness guard (naming `downstream` when it fires): the input
    of both jobs, with the same uids."""
    env.set_max_parallelism(MAX_PARALLELISM)
    kafka = throttled(partition_tracking(build_source(settings)), settings)  # MAX_RECORDS_PER_SECOND
    source = env.from_source(kafka, watermark_strategy(settings), "kafka: " + settings.kafka_input_topic).uid(
        "kafka-source")
    progress = with_event_time_progress(source, settings).uid("event-time-progress").name("event-time progress")
    return with_liveness_guard(progress, settings, downstream).uid("liveness-guard").name("liveness guard")


# What the liveness guard's error message names as the operators behind the source.
DOWNSTREAM = "parse -> k-anonymity windows -> InfluxDB sink / DLQ"


@dataclass(frozen=True)
class JobSinks:
    """Where the job's two outputs go; each attaches its sink(s) to the stream it is given.

    Injected (as in flink-training, where jobs take their source and sink) so that tests run the real
    operators on collections with collecting sinks (testkit/pipeline.py); production: `production_sinks`."""

    windows: Callable[[DataStream], None]  # WindowOutput per (group, window)
    dead_letters: Callable[[DataStream], None]  # dead-letter JSON strings (parse rejections, late frames)


def production_sinks(settings: Settings) -> JobSinks:
    """The job's real outputs: InfluxDB (+ CSV) or HTTP for the windows; the DLQ topic (+ counts in InfluxDB)
    for the dead letters. The uids are the checkpointed ones: do not change them."""
    windows = WindowOptions.from_settings(settings)
    influx = InfluxOptions.from_settings(settings)

    def window_sink(anonymized: DataStream) -> None:
        if settings.output == "http":
            # The main output is the HTTP endpoint alone: no InfluxDB write (statistics, dead-letter counts) in
            # this job, so nothing else can hold it up. Both outputs: two jobs.
            anonymized.process(PostWindows(HttpOutputOptions.from_settings(settings), windows,
                                           settings.job_name)).uid("http-sink").name("HTTP output")
        else:
            csv_dir = str(settings.path("csv_output_dir")) if settings.csv_output_dir else ""
            anonymized.process(WriteWindows(influx, windows, csv_dir)).uid("influxdb-sink").name("InfluxDB sink")

    def dead_letter_sink(dead_letters: DataStream) -> None:
        dlq_sink = build_string_sink(settings, settings.kafka_dlq_topic,
                                     f"{settings.kafka_transactional_id_prefix}-dlq")
        dead_letters.sink_to(dlq_sink).uid("dlq-sink").name("kafka: " + settings.kafka_dlq_topic)
        if settings.output == "influxdb":
            with_window_closes(dead_letters.key_by(dead_letter_reason, key_type=Types.STRING()),
                               name="dead-letter windows close", uid="dead-letter-count-closes",
                               window_ms=windows.window_seconds * 1000, text_records=True).process(
                CountDeadLetters(influx, windows)
            ).uid("dead-letter-counts").name("dead letters per reason -> InfluxDB")

    return JobSinks(windows=window_sink, dead_letters=dead_letter_sink)


def build_pipeline(settings: Settings, source: DataStream, sinks: JobSinks, hierarchy: Hierarchy | None = None) -> None:
    """The job's operators between `source` (raw records of type connectors.kafka.RAW_RECORD, with event-time
    timestamps and watermarks: `guarded_input` in production) and `sinks`. Every stateful operator has a stable uid, so
    checkpoints restore into later versions of the graph and at other parallelisms (up to MAX_PARALLELISM)."""
    hierarchy = hierarchy or load_hierarchy(settings.path("hierarchy_path"))
    parsed = (
        source.process(
            ParseFrames(
                intake_options(settings, hierarchy), ParseOptions.from_settings(settings),
                dead_letter_options(settings),
            )
        )
        .uid("parse")
        .name("parse + validate + pseudonymize")
    )
    # The cardio branch is its own job (flink_jobs/cardio_job.py): sharing this source, its
    # backpressure held back the anonymized output (issue 19).

    windows = WindowOptions.from_settings(settings)
    anonymized = (
        with_window_closes(parsed.key_by(lambda record: record.group, key_type=Types.STRING()),
                           name=f"window closes ({windows.window_seconds} s)", uid="k-anonymity-window-closes",
                           window_ms=windows.window_seconds * 1000,
                           lateness_ms=windows.allowed_lateness_seconds * 1000,
                           pace_ms=windows.window_close_pace_ms)
        .process(
            KAnonymityWindows.create(
                hierarchy, windows, token_key=suppression_token_key(settings.pseudonym_secret_bytes),
            )
        )
        .uid("k-anonymity-windows")
        .name(f"k-anonymity windows (k={windows.k_anonymity}, {windows.window_seconds} s)")
    )
    sinks.windows(anonymized)
    sinks.dead_letters(parsed.get_side_output(DEAD_LETTER).union(anonymized.get_side_output(LATE_FRAMES)))


def create_environment(settings: Settings) -> StreamExecutionEnvironment:
    # PyFlink's own switch, read when the job is submitted: in an embedded mini cluster it otherwise runs
    # every Python worker in this process ("loopback"), so all Python operators share one GIL. A cluster
    # always starts worker processes; "loopback" leaves PyFlink's own choice (set anywhere else, PyFlink
    # refuses to submit to a cluster).
    if settings.python_workers == "process":
        os.environ["_python_worker_execution_mode"] = "process"
    env = StreamExecutionEnvironment.get_execution_environment(flink_configuration(settings))
    j_config = get_j_env_configuration(env._j_stream_execution_environment)
    if settings.python_workers == "process" and is_local_deployment(j_config):
        # Python operators in one slot also share one worker process (one GIL) while Flink manages their
        # memory; unmanaged, each gets its own. Embedded only: a cluster keeps the memory accounting.
        j_config.setString("python.fn-execution.memory.managed", "false")
    # add_jars (not only `pipeline.jars` in the configuration) also puts the connector jars on the
    # client's class loader; with the configuration alone, resolving KafkaSource in the client failed
    # once in ~60 starts here.
    env.add_jars(*pipeline_jars().split(";"))
    # Worker processes (a cluster's, or embedded with PYTHON_WORKERS=process) import only what is shipped:
    # the job's packages, in one folder. Embedded loopback workers are threads of this process: nothing to
    # ship (and no staged copy left in /tmp when this process is killed).
    if settings.python_workers == "process" or not is_local_deployment(j_config):
        env.add_python_file(str(stage_packages(job_packages(ENTRY_MODULES))))
    return env


def forget_secret_environment() -> None:
    """Drop the secret settings from this process's environment once they are read: the operators get theirs
    inside the job graph, and Beam logs the Python workers' environment (inherited from here) when it closes
    them, at every job end, cancel or task failure."""
    for setting in SETTINGS:
        if setting.secret:
            os.environ.pop(setting.env, None)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(argv)
    except (ConfigError, FileNotFoundError) as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    forget_secret_environment()
    if settings.dlq_raw == "plain":
        log.warning("DLQ_RAW=plain: dead letters in %s carry the raw input messages, patient identifiers "
                    "included; restrict who can read that topic", settings.kafka_dlq_topic)
    if settings.generated_secret:
        log.warning("DEMO_MODE: generated a throw-away pseudonym secret; pids will not match other runs")
    log.info("settings %s", settings)
    try:
        hierarchy = load_hierarchy(settings.path("hierarchy_path"))  # fail fast, before the JVM starts
        env = create_environment(settings)
        build_pipeline(settings, guarded_input(env, settings, DOWNSTREAM), production_sinks(settings),
                       hierarchy)
    except (FileNotFoundError, HierarchyError, JarsError, ConfigError) as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    try:
        check_kafka_access(settings, [settings.kafka_input_topic, settings.kafka_dlq_topic])
    except KafkaAccessError as error:
        print(f"kafka error: {error}", file=sys.stderr)
        return 2
    cardio = start_cardio_job(env, settings, sys.argv[1:] if argv is None else argv)
    try:
        env.execute(settings.job_name)
    finally:
        stop_cardio_job(cardio)
    return 0


def start_cardio_job(env: StreamExecutionEnvironment, settings: Settings,
                     argv: list[str]) -> subprocess.Popen[bytes] | None:
    """CARDIO_BRANCH=true in an embedded mini cluster: the branch's own job (flink_jobs/cardio_job.py) in a
    child process with the same flags, in this process group (a kill of the job kills it too). On a cluster
    docker/submit_job.py submits it next to this one."""
    if not settings.cardio_branch:
        return None
    if not is_local_deployment(get_j_env_configuration(env._j_stream_execution_environment)):
        log.info("cardio branch: submit flink_jobs/cardio_job.py as its own job (docker/submit_job.py does)")
        return None
    command = [sys.executable, "-m", "flink_jobs.cardio_job", *argv]
    # Its own Flink log file next to this job's (PyFlink names it flink-<FLINK_IDENT_STRING>-python-<host>.log;
    # with the same name the second JVM's log overwrote the first's).
    environment = dict(os.environ)
    # The secrets left this process's environment (forget_secret_environment): hand them to the child.
    for setting in SETTINGS:
        value = settings.values.get(setting.attr)
        if setting.secret and value:
            environment[setting.env] = value.hex() if isinstance(value, bytes) else str(value)
    environment["FLINK_IDENT_STRING"] = (environment.get("FLINK_IDENT_STRING") or getpass.getuser()) + "-cardio"
    log.info("cardio branch: started as its own job (%s-cardio)", settings.job_name)
    return subprocess.Popen(command, cwd=PROJECT_ROOT, env=environment)


def stop_cardio_job(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
