"""Settings resolution: flag > environment > .env > default; errors name the setting."""

from __future__ import annotations

from pathlib import Path

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


def test_env_example_matches_settings() -> None:
    shipped = (PROJECT_ROOT / ".env.example").read_text()
    assert shipped == env_example(), "regenerate with: .venv/bin/python -m connectors.config > .env.example"
    for setting in SETTINGS:
        assert f"\n{setting.env}=" in shipped
