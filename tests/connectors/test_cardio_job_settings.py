"""The cardio branch's own job shares nothing with the anonymization job that could couple them:
consumer group, checkpoint folder, job name and web UI port are its own; a restore point names the
newest checkpoint of its own folder (a path given to the job is one of the other job's)."""

from __future__ import annotations

from pathlib import Path

from connectors.config import load_settings
from flink_jobs.cardio_job import cardio_settings

BASE = ["--pseudonym-secret", "s" * 32, "--kafka-group-id", "grp", "--job-name", "anon", "--web-ui-port", "8081",
        "--cardio-web-ui-port", "8082"]


def test_own_group_checkpoints_name_and_port(tmp_path: Path) -> None:
    settings = cardio_settings(load_settings([*BASE, "--checkpoint-dir", str(tmp_path)], environ={}))
    assert settings.kafka_group_id == "grp-cardio"
    assert settings.path("checkpoint_dir") == tmp_path / "cardio"
    assert settings.job_name == "anon-cardio"
    assert settings.web_ui_port == "8082"
    assert settings.from_checkpoint == ""
    assert settings.kafka_input_topic == "ecg-raw"  # the same input


def test_restore_from_its_own_newest_checkpoint_only(tmp_path: Path) -> None:
    other = tmp_path / "job-a" / "chk-3"
    other.mkdir(parents=True)
    (other / "_metadata").write_text("")
    args = [*BASE, "--checkpoint-dir", str(tmp_path), "--from-checkpoint", str(other)]
    assert cardio_settings(load_settings(args, environ={})).from_checkpoint == ""  # none of its own yet: fresh
    own = tmp_path / "cardio" / "job-b" / "chk-7"
    own.mkdir(parents=True)
    (own / "_metadata").write_text("")
    assert cardio_settings(load_settings(args, environ={})).from_checkpoint == "latest"
