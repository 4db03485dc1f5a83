"""ECG anonymization job: Kafka -> parse/validate -> site windows -> k-anonymity -> InfluxDB.

Run locally (embedded mini cluster):   python -m flink_jobs.ecg_anonymization_job --help
Submit to a cluster:  flink run -py flink_jobs/ecg_anonymization_job.py -pyexec .venv/bin/python ...
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

if __package__ in (None, ""):
    # `flink run -py flink_jobs/ecg_anonymization_job.py` runs this file as a script.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyflink.common import Configuration, Types
from pyflink.common.time import Time
from pyflink.datastream import MapFunction, OutputTag, RuntimeContext, StreamExecutionEnvironment
from pyflink.datastream.window import TumblingEventTimeWindows

from connectors.checkpoints import resolve_recovery_path
from connectors.config import PROJECT_ROOT, ConfigError, Settings, load_settings
from connectors.jars import JarsError, pipeline_jars
from connectors.kafka import build_source, build_string_sink, watermark_strategy
from hierarchy.loader import Hierarchy, HierarchyError, load_hierarchy
from operators.k_anonymity import KAnonymityWindow
from operators.parse import DEAD_LETTER, ParseFrames, late_record_message
from operators.records import KeyedFrame
from operators.sinks import WriteWindows
from privacy.intake import IntakeOptions

log = logging.getLogger("ecg.job")

# Packages shipped to the Python workers (local mini cluster and `flink run` alike).
PYTHON_PACKAGES = ("connectors", "contract", "hierarchy", "operators", "privacy")
LATE = OutputTag("late-frames")
INFLUX_OPTION_NAMES = (
    "influx_transport", "influx_url", "influx_token", "influx_org", "influx_bucket", "influx_db", "influx_rp",
    "influx_username", "influx_password", "influx_measurement", "influx_batch_points",
)


class LateToDeadLetter(MapFunction):
    """Late frames are accounted for: counted and dead-lettered with their source position."""

    def __init__(self, window_seconds: int) -> None:
        self._window_seconds = window_seconds

    def open(self, runtime_context: RuntimeContext) -> None:
        self._late = runtime_context.get_metrics_group().add_group("ecg").counter("late_records")

    def map(self, value: KeyedFrame) -> str:
        self._late.inc()
        return late_record_message(value, self._window_seconds)


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
    )


def build_pipeline(env: StreamExecutionEnvironment, settings: Settings, hierarchy: Hierarchy | None = None) -> None:
    hierarchy = hierarchy or load_hierarchy(settings.path("hierarchy_path"))
    raw = env.from_source(build_source(settings), watermark_strategy(settings), "kafka: " + settings.kafka_input_topic)

    parsed = raw.process(
        ParseFrames(
            intake_options(settings, hierarchy),
            group_field=settings.group_field,
            ts_tolerance_ms=settings.ts_tolerance_seconds * 1000,
        )
    ).name("parse + validate + pseudonymize")

    windows = (
        parsed.key_by(lambda record: record.group, key_type=Types.STRING())
        .window(TumblingEventTimeWindows.of(Time.seconds(settings.window_seconds)))
        .allowed_lateness(settings.allowed_lateness_seconds * 1000)
        .side_output_late_data(LATE)
    )
    anonymized = windows.process(
        KAnonymityWindow(hierarchy, settings.k_anonymity, settings.max_delay_windows, settings.l_diversity)
    ).name(f"k-anonymity (k={settings.k_anonymity})")

    influx_options = {name: getattr(settings, name) for name in INFLUX_OPTION_NAMES}
    csv_dir = str(settings.path("csv_output_dir")) if settings.csv_output_dir else ""
    anonymized.process(WriteWindows(influx_options, csv_dir)).name("InfluxDB sink")

    late = anonymized.get_side_output(LATE).map(LateToDeadLetter(settings.window_seconds), Types.STRING())
    dead_letters = parsed.get_side_output(DEAD_LETTER).union(late)
    dead_letters.sink_to(build_string_sink(settings, settings.kafka_dlq_topic, "ecg-dlq")).name(
        "kafka: " + settings.kafka_dlq_topic
    )


def create_environment(settings: Settings) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment(flink_configuration(settings))
    # add_jars (not only `pipeline.jars` in the configuration) also puts the connector jars on the
    # client's class loader; with the configuration alone, resolving KafkaSource in the client failed
    # once in ~60 starts here.
    env.add_jars(*pipeline_jars().split(";"))
    for package in PYTHON_PACKAGES:
        env.add_python_file(str(PROJECT_ROOT / package))
    return env


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(argv)
    except (ConfigError, FileNotFoundError) as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    if settings.generated_secret:
        log.warning("DEMO_MODE: generated a throw-away pseudonym secret; pids will not match other runs")
    log.info("settings %s", settings)
    try:
        hierarchy = load_hierarchy(settings.path("hierarchy_path"))  # fail fast, before the JVM starts
        env = create_environment(settings)
        build_pipeline(env, settings, hierarchy)
    except (FileNotFoundError, HierarchyError, JarsError) as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    env.execute(settings.job_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
