"""Typed options of the operators: every field is a setting of connectors/config.py with the same type, built in
one place (options_from_settings), so a renamed or retyped setting fails when the job is built."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from typing import ClassVar

import pytest

from connectors.config import SETTINGS, ConfigError, load_settings, option_settings, options_from_settings
from connectors.http_output import HttpOutputOptions
from connectors.influxdb import InfluxOptions
from operators.k_anonymity import WindowOptions
from operators.parse import ParseOptions

OPTIONS_CLASSES = (InfluxOptions, WindowOptions, ParseOptions, HttpOutputOptions)
SECRET = "options-test-secret-0123456789"


@pytest.mark.parametrize("options_class", OPTIONS_CLASSES, ids=lambda cls: cls.__name__)
def test_every_option_is_a_setting_of_the_same_type(options_class: type) -> None:
    for name, (setting, kind) in option_settings(options_class).items():
        assert setting.default is not None, name
        parsed = setting.parse(setting.default)
        assert type(parsed) is kind, f"{options_class.__name__}.{name}: {kind.__name__}, {setting.env} parses to " \
                                     f"{type(parsed).__name__}"


@pytest.mark.parametrize("options_class", OPTIONS_CLASSES, ids=lambda cls: cls.__name__)
def test_options_carry_the_settings_values_and_defaults(options_class: type) -> None:
    settings = load_settings([], environ={"PSEUDONYM_SECRET": SECRET})
    options = options_class.from_settings(settings)
    prefix = getattr(options_class, "SETTINGS_PREFIX", "")
    assert dataclasses.asdict(options) == {field.name: settings.values[prefix + field.name]
                                           for field in dataclasses.fields(options_class)}
    defaults = {setting.attr: setting.parse(setting.default) for setting in SETTINGS if setting.default is not None}
    assert all(getattr(options, name) == defaults[prefix + name] for name in option_settings(options_class)
               if settings.sources[prefix + name] == "default")
    assert pickle.loads(pickle.dumps(options)) == options  # they travel into the Python operators


def test_influx_writers_default_is_the_settings_default() -> None:
    options = InfluxOptions.from_settings(load_settings([], environ={"PSEUDONYM_SECRET": SECRET}))
    assert (options.writers, options.write_queue, options.batch_points) == (4, 0, 20000)


def test_secrets_stay_out_of_the_repr() -> None:
    settings = load_settings(["--influx-token", "tok-s3cret", "--influx-password", "pw-s3cret"],
                             environ={"PSEUDONYM_SECRET": SECRET})
    text = repr(InfluxOptions.from_settings(settings))
    assert "s3cret" not in text and "url=" in text


def test_a_field_without_a_setting_or_of_another_type_fails_at_build_time() -> None:
    @dataclass(frozen=True)
    class Renamed:
        SETTINGS_PREFIX: ClassVar[str] = "influx_"
        adress: str

    @dataclass(frozen=True)
    class Retyped:
        window_seconds: float

    settings = load_settings([], environ={"PSEUDONYM_SECRET": SECRET})
    with pytest.raises(KeyError, match=r"Renamed\.adress: no setting INFLUX_ADRESS"):
        options_from_settings(Renamed, settings)
    with pytest.raises(ConfigError, match=r"Retyped\.window_seconds is float, setting WINDOW_SECONDS gives int"):
        options_from_settings(Retyped, settings)


def test_the_branch_writes_to_its_own_bucket_or_database_when_set() -> None:
    base = InfluxOptions.from_settings(load_settings([], environ={"PSEUDONYM_SECRET": SECRET}))
    assert base.branch_bucket == "" and base.for_branch() == base  # default: the main bucket / database
    settings = load_settings([], environ={"PSEUDONYM_SECRET": SECRET, "INFLUX_BRANCH_BUCKET": "ecg-branch"})
    branch = InfluxOptions.from_settings(settings).for_branch()
    assert (branch.bucket, branch.db) == ("ecg-branch", "ecg-branch")
    assert dataclasses.replace(branch, bucket=base.bucket, db=base.db, branch_bucket="") == base
