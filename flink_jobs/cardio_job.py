"""The cardio branch as its own Flink job: Kafka -> parse -> anomalies + federated averaging -> Kafka.

It reads the same input topic as the anonymization job, with its own consumer group
(`<KAFKA_GROUP_ID>-cardio`), checkpoint folder (`<CHECKPOINT_DIR>/cardio`) and job name
(`<JOB_NAME>-cardio`), so that a slow, stalled or failing branch cannot hold back the anonymized
output: in one job the two paths shared the source, and the branch's backpressure stopped the source
for both (issue 19). Dead letters stay the anonymization job's: this job's parse step drops them.

Started with the anonymization job when CARDIO_BRANCH=true: as a child process of
`python -m flink_jobs.ecg_anonymization_job` (embedded mini cluster), or by docker/submit_job.py as a
second `flink run` on a cluster. Standalone: python -m flink_jobs.cardio_job [same flags as the job].
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyflink.datastream import DataStream

from connectors.checkpoints import latest_checkpoint
from connectors.config import ConfigError, Settings, load_settings
from connectors.jars import JarsError
from connectors.kafka import KafkaAccessError, check_kafka_access
from flink_jobs.cardio_branch import (
    BranchSinks,
    build_cardio_branch,
    global_models_back,
    needs_frame_heads,
    production_branch_sinks,
)
from hierarchy.loader import Hierarchy, HierarchyError, load_hierarchy
from operators.parse import DEAD_LETTER, ParseDeviceFrames, ParseOptions
from operators.records import DEVICE_FRAME

log = logging.getLogger("ecg.cardio-job")

CHECKPOINT_SUBDIR = "cardio"


def cardio_settings(settings: Settings) -> Settings:
    """The anonymization job's settings, with what this job must not share with it: consumer group,
    checkpoint folder, job name, web UI port and the restore point (a path names a checkpoint of the
    other job; this job resumes from the newest of its own)."""
    checkpoint_dir = settings.path("checkpoint_dir") / CHECKPOINT_SUBDIR
    from_checkpoint = ""
    if settings.from_checkpoint and latest_checkpoint(checkpoint_dir) is not None:
        from_checkpoint = "latest"
    values = {
        **settings.values,
        "kafka_group_id": settings.kafka_group_id + "-cardio",
        "checkpoint_dir": str(checkpoint_dir),
        "job_name": settings.job_name + "-cardio",
        "web_ui_port": settings.cardio_web_ui_port,
        "from_checkpoint": from_checkpoint,
    }
    return Settings(values, settings.generated_secret, settings.sources)


def build_cardio_pipeline(settings: Settings, source: DataStream, globals_back: DataStream, sinks: BranchSinks,
                          hierarchy: Hierarchy | None = None) -> None:
    """`source` (raw records of type connectors.kafka.RAW_RECORD with event-time timestamps and watermarks:
    `guarded_input` in production) -> parse (Row(pid, ts, fs, samples) and frame heads; dead letters to
    `sinks.dead_letters`) -> branch (flink_jobs/cardio_branch.py) with `globals_back` -> `sinks`."""
    from flink_jobs.ecg_anonymization_job import dead_letter_options, intake_options

    hierarchy = hierarchy or load_hierarchy(settings.path("hierarchy_path"))
    parsed = (
        source.process(
            ParseDeviceFrames(
                intake_options(settings, hierarchy), ParseOptions.from_settings(settings),
                dead_letter_options(settings), frame_heads=needs_frame_heads(settings),
            ),
            DEVICE_FRAME,
        )
        .uid("parse")
        .name("parse + validate + pseudonymize (dead letters: the anonymization job)")
    )
    sinks.dead_letters(parsed.get_side_output(DEAD_LETTER))
    build_cardio_branch(settings, parsed, globals_back, sinks)


def yield_cpu(niceness: int) -> None:
    """The branch is optional: on busy cores the anonymized output comes first (issue 24; "the main output never
    waits on a side output"). Raised before the embedded mini cluster starts, so its JVM and Python workers inherit
    it; on a cluster (`flink run`) it changes only the client process."""
    if niceness <= 0:
        return
    try:
        os.nice(niceness)
    except OSError as error:  # a container may forbid it: the branch then runs at the same priority
        log.warning("CARDIO_NICE=%d not applied: %s", niceness, error)


def main(argv: list[str] | None = None) -> int:
    from flink_jobs.ecg_anonymization_job import create_environment, guarded_input

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = cardio_settings(load_settings(argv))
    except (ConfigError, FileNotFoundError) as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    if not settings.cardio_branch:
        print("CARDIO_BRANCH=false: nothing to run", file=sys.stderr)
        return 0
    yield_cpu(settings.cardio_nice)
    try:
        hierarchy = load_hierarchy(settings.path("hierarchy_path"))
        env = create_environment(settings)
        build_cardio_pipeline(settings, guarded_input(env, settings, "parse -> cardio branch"),
                              global_models_back(env, settings), production_branch_sinks(settings), hierarchy)
    except (FileNotFoundError, HierarchyError, JarsError, ConfigError) as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    try:
        check_kafka_access(settings, [settings.kafka_input_topic, settings.kafka_anomaly_topic,
                                      settings.kafka_model_topic])
    except KafkaAccessError as error:
        print(f"kafka error: {error}", file=sys.stderr)
        return 2
    env.execute(settings.job_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
