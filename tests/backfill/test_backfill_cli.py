"""python -m backfill without services: slices, the stored schema's line protocol, the staging topic's name, the
job command, and the configuration errors that stop it before it touches Kafka or InfluxDB."""

from __future__ import annotations

import pytest

from backfill.cli import job_command, main, staging_topic_name
from backfill.influx_input import InfluxInputOptions, RawRecord, V1RawReader, make_reader, raw_point_line, time_slices
from connectors.config import load_settings
from connectors.influxdb import InfluxOptions

SECRET = ["--pseudonym-secret", "unit-test-secret-0123456789"]


def test_slices_cover_the_range_without_gaps_or_overlap() -> None:
    assert list(time_slices(1000, 10_500, 4)) == [(1000, 5000), (5000, 9000), (9000, 10_500)]
    assert list(time_slices(0, 4000, 4)) == [(0, 4000)]


def test_a_stored_message_is_written_as_is_with_its_key_and_timestamp() -> None:
    # Line protocol: in a string field \ and " are escaped; in a tag value space, comma and equals sign.
    record = RawRecord(b"dev 1,a=b", rb'{"n": "O\\B \"Q\""}', 1_763_812_800_123)
    assert raw_point_line("ecg_raw", record) == (
        r'ecg_raw,device_id=dev\ 1\,a\=b frame="{\"n\": \"O\\\\B \\\"Q\\\"\"}" 1763812800123000000')
    assert raw_point_line("ecg_raw", RawRecord(None, b"{}", 5)) == 'ecg_raw frame="{}" 5000000'


def test_the_same_backfill_stages_into_the_same_topic() -> None:
    settings = load_settings([*SECRET, "--kafka-input-topic", "raw"], environ={})
    name = staging_topic_name(settings, "v1:in/ecg_raw", 1, 2)
    assert name == staging_topic_name(settings, "v1:in/ecg_raw", 1, 2)
    assert name.startswith("raw.influx-backfill-") and name != staging_topic_name(settings, "v1:in/ecg_raw", 1, 3)


def test_the_job_runs_as_a_kafka_backfill_of_the_staging_topic(tmp_path) -> None:
    argv = [*SECRET, "--kafka-stop-at", "none", "--from-checkpoint", "latest"]
    settings = load_settings(argv, environ={})
    command = job_command(argv, settings, "raw.influx-backfill-abc", tmp_path)
    job = load_settings(command[3:], environ={})  # the later flags win
    assert (job.kafka_input_topic, job.kafka_stop_at, job.kafka_starting_offsets) == (
        "raw.influx-backfill-abc", "latest", "earliest")
    assert not job.cardio_branch and job.from_checkpoint == "" and job.checkpoint_dir == str(tmp_path / "checkpoints")
    assert job.kafka_dlq_topic == settings.kafka_dlq_topic  # the job's own dead-letter topic


def test_the_reader_follows_the_transport() -> None:
    settings = load_settings([*SECRET, "--influx-transport", "v1", "--influx-input-db", "raw"], environ={})
    reader = make_reader(InfluxOptions.from_settings(settings), InfluxInputOptions.from_settings(settings))
    assert isinstance(reader, V1RawReader) and reader.db == "raw" and reader.measurement == "ecg_raw"
    settings = load_settings([*SECRET, "--influx-transport", "v1"], environ={})
    with pytest.raises(ValueError, match="INFLUX_INPUT_DB"):
        make_reader(InfluxOptions.from_settings(settings), InfluxInputOptions.from_settings(settings))


@pytest.mark.parametrize(("extra", "message"), [
    (["--from", "yesterday", "--to", "1763812800000"], "--from / --to"),
    (["--from", "1763812800000", "--to", "1763812800000"], "--to must be after --from"),
    (["--from", "0", "--to", "1", "--influx-transport", "v2"], "INFLUX_INPUT_BUCKET is required"),
    (["--from", "0", "--to", "1", "--influx-input-slice-seconds", "0"], "INFLUX_INPUT_SLICE_SECONDS"),
    (["--from", "0", "--to", "1", "--influx-input-bucket", "b", "--cardio-branch", "true",
      "--k-anonymity", "0"], "K_ANONYMITY"),
])
def test_configuration_errors_exit_2(extra: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSEUDONYM_SECRET", "unit-test-secret-0123456789")
    assert main(["--env-file", "/dev/null", *extra]) == 2
    assert message in capsys.readouterr().err
