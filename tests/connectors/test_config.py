"""Settings resolution: flag > environment > .env > default; errors name the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.config import PROJECT_ROOT, SETTINGS, ConfigError, env_example, load_settings

SECRET = "s3cret-value-for-tests-0123456789"


def _load(tmp_path: Path, argv: list[str], environ: dict[str, str], dotenv: str = "") -> object:
    env_file = tmp_path / ".env"
    env_file.write_text(dotenv)
    return load_settings(["--env-file", str(env_file), *argv], environ)


def test_defaults_and_precedence(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        ["--window-seconds", "10"],
        {"PSEUDONYM_SECRET": SECRET, "WINDOW_SECONDS": "7", "K_ANONYMITY": "3"},
        dotenv="K_ANONYMITY=4\nALLOWED_LATENESS_SECONDS=2\nWINDOW_SECONDS=9\n",
    )
    assert settings.window_seconds == 10  # flag beats env and .env
    assert settings.k_anonymity == 3  # env beats .env
    assert settings.allowed_lateness_seconds == 2  # .env beats default
    assert settings.kafka_input_topic == "ecg-raw"  # default
    assert settings.sources["window_seconds"] == "--window-seconds"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--k-anonymity", "0"], "K_ANONYMITY"),
        (["--window-seconds", "five"], "WINDOW_SECONDS"),
        (["--influx-transport", "v3"], "INFLUX_TRANSPORT"),
        (["--demo-mode", "maybe"], "DEMO_MODE"),
        (["--l-diversity", "2"], "SENSITIVE_ATTRIBUTE"),
        (["--hierarchy-path", "missing.csv"], "HIERARCHY_PATH"),
        (["--pseudonym-hex-chars", "8"], "PSEUDONYM_HEX_CHARS"),
        (["--kafka-transaction-timeout-ms", "60000"], "KAFKA_TRANSACTION_TIMEOUT_MS"),
        (["--web-ui-port", "http"], "WEB_UI_PORT"),
        (["--influx-writers", "0"], "INFLUX_WRITERS"),
        (["--influx-writers", "2", "--influx-write-queue", "4"], "INFLUX_WRITERS"),
        (["--influx-write-queue", "4"], "needs INFLUX_WRITERS=1"),
    ],
)
def test_invalid_values_name_the_setting(tmp_path: Path, argv: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        _load(tmp_path, argv, {"PSEUDONYM_SECRET": SECRET})


def test_secret_required_unless_demo_mode(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PSEUDONYM_SECRET is required"):
        _load(tmp_path, [], {})
    demo = _load(tmp_path, ["--demo-mode", "true"], {})
    assert demo.generated_secret and len(demo.pseudonym_secret) >= 32
    with pytest.raises(ConfigError, match="at least 16"):
        _load(tmp_path, [], {"PSEUDONYM_SECRET": "short"})


def test_secrets_never_in_repr(tmp_path: Path) -> None:
    settings = _load(tmp_path, ["--influx-token", "tok-abcdef-123456"], {"PSEUDONYM_SECRET": SECRET})
    text = repr(settings) + str(settings)
    assert SECRET not in text and "tok-abcdef-123456" not in text
    assert settings.pseudonym_secret == SECRET


def test_invalid_secret_value_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, [], {"PSEUDONYM_SECRET": SECRET, "PSEUDONYM_HEX_CHARS": "x" * 3})
    assert SECRET not in str(error.value)


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.secret], ids=lambda s: s.env)
def test_every_secret_setting_reads_its_file_and_never_shows_it(tmp_path: Path, setting: Any) -> None:
    value = "ab" * 32 if setting.env == "DLQ_RAW_KEY" else f"from-file-{setting.env.lower()}-7c1d93e0"
    secret_file = tmp_path / "secret"
    secret_file.write_text(value + "\n")  # as a Docker secret or an editor leaves it
    environ = {"PSEUDONYM_SECRET": SECRET, f"{setting.env}_FILE": str(secret_file)}
    environ.pop(setting.env, None)
    settings = _load(tmp_path, [], environ)
    loaded = settings.values[setting.attr]
    assert (loaded.hex() if isinstance(loaded, bytes) else loaded) == value
    assert settings.sources[setting.attr] == f"env {setting.env}_FILE"
    assert value not in repr(settings) + str(settings.redacted()) + str(settings.sources)


@pytest.mark.parametrize(("variable", "bad"), [("PSEUDONYM_SECRET", "short-7c1d"),
                                               ("DLQ_RAW_KEY", "not-a-key-but-a-secret-7c1d93e0")])
def test_an_invalid_secret_from_a_file_is_not_echoed(tmp_path: Path, variable: str, bad: str) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(bad)
    environ = {"PSEUDONYM_SECRET": SECRET, f"{variable}_FILE": str(secret_file)}
    environ.pop(variable if variable == "PSEUDONYM_SECRET" else "", None)
    with pytest.raises(ConfigError, match=variable) as error:
        _load(tmp_path, [], environ)
    assert bad not in str(error.value)


def test_env_example_matches_settings() -> None:
    shipped = (PROJECT_ROOT / ".env.example").read_text()
    assert shipped == env_example(), "regenerate with: .venv/bin/python -m connectors.config > .env.example"
    for setting in SETTINGS:
        assert f"\n{setting.env}=" in shipped


def test_backfill_stop_and_start_timestamps(tmp_path: Path) -> None:
    environ = {"PSEUDONYM_SECRET": SECRET}
    streaming = _load(tmp_path, [], environ)
    assert streaming.kafka_stop_at == "none" and streaming.kafka_starting_offsets == "earliest"
    ranged = _load(tmp_path, ["--kafka-starting-offsets", "2025-11-22T12:00:00Z",
                              "--kafka-stop-at", "1763813100000", "--cardio-branch", "false"], environ)
    assert ranged.kafka_starting_offsets == 1_763_812_800_000
    assert ranged.kafka_stop_at == 1_763_813_100_000
    naive = _load(tmp_path, ["--kafka-stop-at", "2025-11-22T12:00:00", "--cardio-branch", "false"], environ)
    assert naive.kafka_stop_at == 1_763_812_800_000  # no zone: UTC
    assert _load(tmp_path, ["--kafka-stop-at", "latest", "--cardio-branch", "false"], environ).kafka_stop_at == "latest"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--kafka-stop-at", "latest"], "CARDIO_BRANCH=false"),
        (["--kafka-stop-at", "tomorrow", "--cardio-branch", "false"], "KAFKA_STOP_AT"),
        (["--kafka-starting-offsets", "oldest"], "KAFKA_STARTING_OFFSETS"),
        (["--kafka-starting-offsets", "2000", "--kafka-stop-at", "1000", "--cardio-branch", "false"],
         "must be after KAFKA_STARTING_OFFSETS"),
        (["--output", "http"], "HTTP_OUTPUT_URL"),
        (["--output", "http", "--http-output-url", "ftp://x"], "HTTP_OUTPUT_URL"),
        (["--output", "csv"], "OUTPUT"),
    ],
)
def test_invalid_backfill_and_http_settings(tmp_path: Path, argv: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        _load(tmp_path, argv, {"PSEUDONYM_SECRET": SECRET})


def test_http_output_token_is_masked(tmp_path: Path) -> None:
    token = "http-token-0123456789abcdef"
    settings = _load(tmp_path, ["--output", "http", "--http-output-url", "https://receiver.example/ingest"],
                     {"PSEUDONYM_SECRET": SECRET, "HTTP_OUTPUT_TOKEN": token})
    assert settings.http_output_token == token
    assert token not in repr(settings) and token not in str(settings)
