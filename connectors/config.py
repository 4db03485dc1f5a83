"""Job settings: `.env` / environment, overridden by command-line flags.

Every setting is declared once in SETTINGS (env name, flag, type, default, help); the argparse
parser, `.env.example` check and validation are all derived from that table. Invalid values fail at
start with a message naming the setting. Secrets are masked in every repr and log line.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import os
import secrets
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

from dotenv import dotenv_values

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the setting."""


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be >= 1")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be > 0")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise ValueError("must be >= 0")
    return number


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


SEAL_KEY_BYTES = 32  # AES-256


def _seal_key(value: str) -> bytes:
    """DLQ_RAW_KEY: 32 bytes as base64 or 64 hex characters (empty: none)."""
    text = value.strip()
    if not text:
        return b""
    try:
        key = bytes.fromhex(text) if len(text) == 2 * SEAL_KEY_BYTES else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise ValueError(f"must be {SEAL_KEY_BYTES} bytes as base64 or hex") from None
    if len(key) != SEAL_KEY_BYTES:
        raise ValueError(f"must be {SEAL_KEY_BYTES} bytes as base64 or hex")
    return key


def _text(value: str) -> str:
    return value


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def timestamp_ms(value: str) -> int | None:
    """Epoch milliseconds of ``value`` (digits: epoch ms; else ISO 8601, UTC when it names no zone), or None."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _offsets_start(value: str) -> str | int:
    """KAFKA_STARTING_OFFSETS: a mode name, or a timestamp as epoch ms."""
    if value in ("earliest", "latest", "committed"):
        return value
    stamp = timestamp_ms(value)
    if stamp is None:
        raise ValueError("must be earliest, latest, committed, or a timestamp (epoch ms or ISO 8601)")
    return stamp


def _offsets_stop(value: str) -> str | int:
    """KAFKA_STOP_AT: none, latest, or a timestamp as epoch ms."""
    if value in ("none", "latest"):
        return value
    stamp = timestamp_ms(value)
    if stamp is None:
        raise ValueError("must be none, latest, or a timestamp (epoch ms or ISO 8601)")
    return stamp


@dataclass(frozen=True)
class Setting:
    env: str
    default: str | None
    parse: Callable[[str], Any]
    help: str
    secret: bool = False

    @property
    def attr(self) -> str:
        return self.env.lower()

    @property
    def flag(self) -> str:
        return "--" + self.env.lower().replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    # Kafka
    Setting("KAFKA_BOOTSTRAP", "127.0.0.1:9092", _non_empty, "Kafka bootstrap servers"),
    Setting("KAFKA_INPUT_TOPIC", "ecg-raw", _non_empty, "input topic of ECG frames"),
    Setting("KAFKA_DLQ_TOPIC", "ecg-dlq", _non_empty, "dead-letter topic for invalid and late input"),
    Setting(
        "DLQ_RAW",
        "none",
        _choice("none", "encrypted", "plain"),
        "raw message in dead letters: none (position only; re-read from the input topic), encrypted "
        "(AES-256-GCM under DLQ_RAW_KEY), plain (patient data in clear: logged as a warning at start)",
    ),
    Setting("DLQ_RAW_KEY", "", _seal_key,
            "DLQ_RAW=encrypted: 32-byte key, base64 or hex (not the pseudonym secret)", secret=True),
    Setting("DLQ_RAW_KEY_ID", "dlq-key-1", _non_empty, "DLQ_RAW=encrypted: id of DLQ_RAW_KEY, stored in each letter"),
    Setting("KAFKA_ANOMALY_TOPIC", "ecg-anomalies", _non_empty, "anomaly events (cardio branch)"),
    Setting("KAFKA_MODEL_TOPIC", "ecg-model-updates", _non_empty, "local + global model updates (cardio branch)"),
    Setting("KAFKA_GROUP_ID", "ecg-anonymizer", _non_empty, "consumer group id (offsets live in checkpoints)"),
    Setting(
        "KAFKA_STARTING_OFFSETS",
        "earliest",
        _offsets_start,
        "where a job without checkpoint starts reading: earliest, latest, committed, or a timestamp "
        "(epoch ms or ISO 8601; the first record at or after it)",
    ),
    Setting(
        "KAFKA_STOP_AT",
        "none",
        _offsets_stop,
        "none: stream; latest: a one-time backfill up to the offsets at start; a timestamp (epoch ms or "
        "ISO 8601): up to the records before it. With a stop the job ends by itself (exit 0) when the input "
        "is read, every window closed; needs CARDIO_BRANCH=false",
    ),
    Setting(
        "KAFKA_DELIVERY",
        "at-least-once",
        _choice("at-least-once", "exactly-once"),
        "delivery guarantee of the Kafka sinks (exactly-once needs broker transactions)",
    ),
    Setting(
        "KAFKA_TRANSACTIONAL_ID_PREFIX",
        "ecg",
        _non_empty,
        "prefix of the exactly-once sinks' transactional ids (<prefix>-dlq, -anomalies, -model-updates); "
        "two jobs on one broker need different ones",
    ),
    Setting(
        "KAFKA_TRANSACTION_TIMEOUT_MS",
        "900000",
        _positive_int,
        "transaction.timeout.ms of exactly-once sinks; above max checkpoint + restart time",
    ),
    # Kafka client security (source, sinks, liveness probe, pre-flight check, simulator): connectors/kafka_security.py
    Setting(
        "KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        _choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        "security.protocol of every Kafka client: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (TLS + SASL login)",
    ),
    Setting("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", _choice("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"),
            "SASL_*: the SASL mechanism"),
    Setting("KAFKA_SASL_USERNAME", "", _text, "SASL_*: user name (the principal User:<name> of the ACLs)"),
    Setting("KAFKA_SASL_PASSWORD", "", _text, "SASL_*: its password (or KAFKA_SASL_PASSWORD_FILE)", secret=True),
    Setting("KAFKA_SSL_CA_FILE", "", _text,
            "SSL / SASL_SSL: PEM file of the CAs to trust for the broker's certificate (empty: the JVM's / system's)"),
    Setting("KAFKA_SSL_CERT_FILE", "", _text,
            "SSL / SASL_SSL, optional: PEM client certificate (chain) for mutual TLS; needs KAFKA_SSL_KEY_FILE"),
    Setting("KAFKA_SSL_KEY_FILE", "", _text, "its private key, PEM (PKCS#8, encrypted or not)"),
    Setting("KAFKA_SSL_KEY_PASSWORD", "", _text, "password of an encrypted KAFKA_SSL_KEY_FILE (or *_FILE)",
            secret=True),
    Setting(
        "MAX_RECORDS_PER_SECOND",
        "0",
        _non_negative_float,
        "throttle: input records per second of the whole job at most (each of the PARALLELISM source readers "
        "gets its share); slows the source down (Kafka lag grows), drops and reorders nothing; 0 = off",
    ),
    # Windows and event time
    Setting("WINDOW_SECONDS", "5", _positive_int, "tumbling event-time window length"),
    Setting("ALLOWED_LATENESS_SECONDS", "0", _non_negative_int, "allowed lateness of windows"),
    Setting(
        "WINDOW_CLOSE_PACE_MS",
        "200",
        _non_negative_int,
        "when one watermark closes several windows (a catch-up), close one window per this many ms, so that a "
        "checkpoint barrier waits for about one window's anonymization, not all of them; 0 = all at once",
    ),
    Setting("MAX_OUT_OF_ORDERNESS_SECONDS", "2", _non_negative_int, "watermark bound per partition"),
    Setting(
        "IDLE_PARTITION_TIMEOUT_SECONDS",
        "10",
        _positive_float,
        "a partition without records this long stops holding event time back (its late frames go to the DLQ)",
    ),
    Setting(
        "WATERMARK_MAX_DRIFT_SECONDS",
        "0",
        _non_negative_float,
        "pause partitions whose event time runs ahead of the slowest by more than this (0 = off)",
    ),
    Setting("TS_TOLERANCE_SECONDS", "60", _non_negative_int, "max |ts - Kafka record timestamp|"),
    Setting("GROUP_FIELD", "site", _non_empty, "input field that keys the anonymization windows"),
    # Privacy
    Setting("K_ANONYMITY", "5", _positive_int, "k: distinct patients per published class"),
    Setting("L_DIVERSITY", "0", _non_negative_int, "distinct l-diversity of SENSITIVE_ATTRIBUTE (0 = off)"),
    Setting("SENSITIVE_ATTRIBUTE", "", _text, "input field used for l-diversity (e.g. rhythm)"),
    Setting("HIERARCHY_PATH", "hierarchy/ecg_hierarchy.csv", _non_empty, "generalization hierarchy CSV"),
    Setting("PSEUDONYM_SECRET", None, _text, "HMAC key of the pid pseudonyms (required)", secret=True),
    Setting("PSEUDONYM_HEX_CHARS", "32", _positive_int, "hex characters kept of the HMAC (16..64)"),
    Setting(
        "PSEUDONYM_SCOPE",
        "group",
        _choice("group", "global"),
        "group: a patient's pseudonym differs per GROUP_FIELD value (ward); global: one per patient",
    ),
    Setting("DEMO_MODE", "false", _bool, "generate a throw-away pseudonym secret (demo only)"),
    # Anomaly detection + federated learning (the cardio branch)
    Setting("CARDIO_BRANCH", "true", _bool, "run the anomaly / federated-learning branch"),
    Setting("CARDIO_NICE", "10", _non_negative_int,
            "OS scheduling niceness of the cardio job when it runs embedded (0..19): on busy cores the anonymized "
            "output's processes come first (0 = equal)"),
    Setting("CARDIO_BLOCK_SECONDS", "5", _positive_int,
            "the detector takes a device's frames of one aligned event-time block this long at once (1..60); "
            "anomalies wait for their block, global models for the block's end"),
    Setting("ANOMALY_Z_THRESHOLD", "2.5", _positive_float, "|z| of a 30 s / 5 min window HR that is an anomaly"),
    Setting("ANOMALY_WARMUP_WINDOWS", "4", _positive_int, "30 s windows before a device's own baseline scores"),
    Setting("ANOMALY_TACHY_BPM", "130", _positive_float, "30 s window HR above this: tachycardia"),
    Setting("ANOMALY_BRADY_BPM", "45", _positive_float, "30 s window HR below this: bradycardia"),
    Setting("ANOMALY_MIN_EPISODE_SECONDS", "8", _positive_float,
            "a heart rate beyond TACHY/BRADY (median of 9 beats) this long is a tachycardia/bradycardia episode"),
    Setting("ANOMALY_ASYSTOLE_SECONDS", "4", _positive_float, "no beat for this long: asystole"),
    Setting("ANOMALY_NOISE_MV", "0.12", _positive_float, "median |2nd difference| of a noisy frame (mV)"),
    Setting("MODEL_UPDATE_SECONDS", "60", _positive_int, "event-time length of a federated round"),
    Setting("MODEL_GRACE_SECONDS", "5", _positive_int, "a round closes this long after its start"),
    Setting("MODEL_GLOBAL_PRIOR", "true", _bool, "new devices start from the global model (false: local only)"),
    Setting("MODEL_PRIOR_TIMEOUT_SECONDS", "120", _positive_float, "wall-clock wait for the prior, then cold"),
    Setting("MODEL_DP_CLIP_NORM", "0", _non_negative_float, "DP-FedAvg clip norm of local updates (0 = off)"),
    Setting("MODEL_DP_NOISE_MULTIPLIER", "1.0", _non_negative_float, "DP-FedAvg noise std / clip norm"),
    Setting(
        "KAFKA_MODEL_STARTING_OFFSETS",
        "latest",
        _choice("earliest", "latest"),
        "where a job without checkpoint starts reading global models back",
    ),
    # InfluxDB
    Setting("INFLUX_TRANSPORT", "v2", _choice("v1", "v2"), "v2: /api/v2/write; v1: /write (InfluxDB 1.x)"),
    Setting("INFLUX_URL", "http://127.0.0.1:8086", _non_empty, "InfluxDB base URL"),
    Setting("INFLUX_TOKEN", "", _text, "v2 API token", secret=True),
    Setting("INFLUX_ORG", "ecg", _text, "v2 organization"),
    Setting("INFLUX_BUCKET", "ecg", _text, "v2 bucket"),
    Setting("INFLUX_DB", "ecg", _text, "v1 database"),
    Setting("INFLUX_BRANCH_BUCKET", "", _text,
            "cardio branch: bucket (v2) or database (v1) of its per-patient anomaly and model statistics "
            "(ecg_anomaly_stats, ecg_model_stats); empty = INFLUX_BUCKET / INFLUX_DB"),
    Setting("INFLUX_RP", "", _text, "v1 retention policy (empty = default)"),
    Setting("INFLUX_USERNAME", "", _text, "v1 user"),
    Setting("INFLUX_PASSWORD", "", _text, "v1 password", secret=True),
    Setting("INFLUX_MEASUREMENT", "ecg_anonymized", _non_empty, "measurement name"),
    Setting(
        "INFLUX_BATCH_POINTS",
        "20000",
        _positive_int,
        "points per write request (whole classes; a larger class gets its own)",
    ),
    Setting(
        "INFLUX_WRITE_QUEUE",
        "0",
        _non_negative_int,
        "N > 0: a background thread writes, up to N requests pending while the next windows are anonymized "
        "(drained at every Python bundle end, so before every checkpoint); 0 = write synchronously",
    ),
    Setting(
        "INFLUX_WRITERS",
        "4",
        _positive_int,
        "connections that write one window's requests at once (each holds whole classes; the window's "
        "statistics line after all of them); 1 = one request after the other",
    ),
    # Backfill from raw ECG stored in InfluxDB (python -m backfill; same INFLUX_URL, transport and credentials)
    Setting("INFLUX_INPUT_DB", "", _text,
            "python -m backfill, v1: database holding the raw ECG frames (schema: README, Backfill)"),
    Setting("INFLUX_INPUT_BUCKET", "", _text, "python -m backfill, v2: bucket holding the raw ECG frames"),
    Setting("INFLUX_INPUT_MEASUREMENT", "ecg_raw", _non_empty, "python -m backfill: measurement of the raw frames"),
    Setting("INFLUX_INPUT_SLICE_SECONDS", "60", _positive_int,
            "python -m backfill: event time read per query (one slice's frames must fit one response)"),
    Setting("CSV_OUTPUT_DIR", "", _text, "optional: one CSV per window in this folder"),
    # HTTP output (OUTPUT=http)
    Setting(
        "OUTPUT",
        "influxdb",
        _choice("influxdb", "http"),
        "the job's main output: influxdb, or http (POST each window's classes as JSON to HTTP_OUTPUT_URL; "
        "for both, run two jobs)",
    ),
    Setting("HTTP_OUTPUT_URL", "", _text, "OUTPUT=http: the endpoint the batches are POSTed to (http or https)"),
    Setting("HTTP_OUTPUT_TOKEN", "", _text, "OUTPUT=http: bearer token (empty: none)", secret=True),
    Setting("HTTP_OUTPUT_CA_FILE", "", _text, "OUTPUT=http: PEM file of the CAs to trust (empty: the system's)"),
    Setting("HTTP_OUTPUT_BATCH_POINTS", "20000", _positive_int,
            "OUTPUT=http: points per request (whole classes; a larger class gets requests of its own)"),
    Setting("HTTP_OUTPUT_ATTEMPTS", "6", _positive_int,
            "OUTPUT=http: tries per request on 5xx, 408, 429 and connection errors, then the job fails and restarts"),
    Setting("HTTP_OUTPUT_RETRY_SECONDS", "0.5", _positive_float,
            "OUTPUT=http: wait before the first retry, doubled after each (at most 10 s)"),
    Setting("HTTP_OUTPUT_TIMEOUT_SECONDS", "30", _positive_float, "OUTPUT=http: timeout of one request"),
    # Flink runtime
    Setting("PARALLELISM", "1", _positive_int, "job parallelism"),
    Setting("CHECKPOINT_DIR", ".run/checkpoints", _non_empty, "checkpoint storage folder or URI"),
    Setting("CHECKPOINT_INTERVAL_SECONDS", "5", _positive_float, "checkpoint interval"),
    Setting("CHECKPOINT_TIMEOUT_SECONDS", "120", _positive_float, "a checkpoint slower than this fails"),
    Setting("RESTART_MAX_BACKOFF_SECONDS", "60", _positive_float, "exponential-delay restart cap"),
    Setting("RESTART_ATTEMPTS", "20", _positive_int, "restarts before the job fails"),
    Setting("FROM_CHECKPOINT", "", _text, "resume from PATH or 'latest' (under CHECKPOINT_DIR)"),
    Setting("WEB_UI_PORT", "", _text, "embedded mini cluster only: serve the Flink web UI on this port"),
    Setting("CARDIO_WEB_UI_PORT", "", _text,
            "embedded mini cluster only: the web UI port of the cardio branch's own job (empty = none)"),
    Setting(
        "LIVENESS_TIMEOUT_SECONDS",
        "120",
        _non_negative_float,
        "fail the job (restart from the last checkpoint) when the input has unread records but no record "
        "left the source for this long, or event time is due to advance but no window fired (0 = off)",
    ),
    Setting("PYTHON_EXECUTABLE", "", _text, "Python of the Flink workers (default: the one running the job)"),
    Setting("PYTHON_BUNDLE_SIZE", "1000", _positive_int,
            "elements per Python bundle (a bundle ends, and the sink's writes drain, at this count or time; a "
            "checkpoint barrier waits for the current bundle: 1000 keeps that short during a catch-up)"),
    Setting("PYTHON_BUNDLE_TIME_MS", "200", _positive_int,
            "milliseconds per Python bundle at most (a Python operator holds the watermark back until its "
            "bundle ends: 200 closes windows ~3 s sooner than PyFlink's 1000)"),
    Setting(
        "PYTHON_WORKERS",
        "loopback",
        _choice("process", "loopback"),
        "embedded mini cluster: 'process' = a Python worker process per Python operator (uses every core, "
        "Python memory not managed by Flink); 'loopback' = all of them as threads of the job's process (one GIL)",
    ),
    Setting("JOB_NAME", "ecg-anonymization", _non_empty, "Flink job name"),
)

_BY_ATTR = {setting.attr: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Resolved, validated settings. Attribute names are the env names in lower case."""

    values: Mapping[str, Any]
    generated_secret: bool = False
    sources: Mapping[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def pseudonym_secret_bytes(self) -> bytes:
        return str(self.values["pseudonym_secret"]).encode("utf-8")

    def path(self, name: str) -> Path:
        """A path setting resolved against the project root when relative."""
        value = Path(str(self.values[name]))
        return value if value.is_absolute() else PROJECT_ROOT / value

    def redacted(self) -> dict[str, Any]:
        return {
            key: ("***" if _BY_ATTR[key].secret and value else value) for key, value in self.values.items()
        }

    def __repr__(self) -> str:
        return f"Settings({self.redacted()})"

    __str__ = __repr__


def read_secret_file(variable: str, path: str) -> str:
    """A secret's value from the file a ``<SETTING>_FILE`` variable names (Docker secrets): its text, without the
    trailing newline."""
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"invalid {variable} = {path!r}: cannot read it ({error.__class__.__name__})") from None


def build_parser(description: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--env-file", default=None, help="dotenv file (default: .env in the project root)")
    for setting in SETTINGS:
        default_text = "required" if setting.default is None else repr(setting.default)
        parser.add_argument(
            setting.flag,
            dest=setting.attr,
            default=None,
            help=f"{setting.help} [env {setting.env}, default {default_text}]",
        )
    return parser


def load_settings(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    parser: argparse.ArgumentParser | None = None,
) -> Settings:
    """Resolve settings: flag > process environment > .env file > default."""
    parser = parser or build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    env_file = Path(args.env_file) if args.env_file else PROJECT_ROOT / ".env"
    if args.env_file and not env_file.exists():
        raise ConfigError(f"--env-file {env_file} does not exist")
    file_values = {k: v for k, v in dotenv_values(env_file).items() if v is not None} if env_file.exists() else {}
    process_env = os.environ if environ is None else environ

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        raw: str | None
        secret_file = f"{setting.env}_FILE"
        if getattr(args, setting.attr) is not None:
            raw, source = getattr(args, setting.attr), setting.flag
        elif setting.env in process_env:
            raw, source = process_env[setting.env], f"env {setting.env}"
        elif setting.secret and process_env.get(secret_file):
            raw, source = read_secret_file(secret_file, process_env[secret_file]), f"env {secret_file}"
        elif file_values.get(setting.env) or (
            setting.env in file_values and not (setting.secret and file_values.get(secret_file))
        ):
            raw, source = file_values[setting.env], f"{env_file.name} {setting.env}"
        elif setting.secret and file_values.get(secret_file):
            raw, source = read_secret_file(secret_file, file_values[secret_file]), f"{env_file.name} {secret_file}"
        else:
            raw, source = setting.default, "default"
        if raw is None:
            values[setting.attr] = None
            sources[setting.attr] = source
            continue
        try:
            values[setting.attr] = setting.parse(raw)
        except ValueError as error:
            shown = "***" if setting.secret else repr(raw)
            raise ConfigError(f"invalid {setting.env} ({source}) = {shown}: {error}") from None
        sources[setting.attr] = source

    generated = False
    if not values.get("pseudonym_secret"):
        if not values["demo_mode"]:
            raise ConfigError(
                "PSEUDONYM_SECRET is required: set it in .env or the environment "
                "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`), "
                "or set DEMO_MODE=true to generate a throw-away secret"
            )
        values["pseudonym_secret"] = secrets.token_hex(32)
        generated = True
    elif len(values["pseudonym_secret"]) < 16:
        raise ConfigError("invalid PSEUDONYM_SECRET: must be at least 16 characters")
    if not 16 <= values["pseudonym_hex_chars"] <= 64:
        raise ConfigError("invalid PSEUDONYM_HEX_CHARS: must be within 16..64")
    if values["l_diversity"] > 0 and not values["sensitive_attribute"]:
        raise ConfigError("invalid L_DIVERSITY: needs SENSITIVE_ATTRIBUTE")
    if values["influx_writers"] > 1 and values["influx_write_queue"] > 0:
        raise ConfigError("invalid INFLUX_WRITERS / INFLUX_WRITE_QUEUE: the background queue (INFLUX_WRITE_QUEUE > 0) "
                          "needs INFLUX_WRITERS=1; concurrent writers (INFLUX_WRITERS > 1) need INFLUX_WRITE_QUEUE=0")
    if values["dlq_raw"] == "encrypted":
        key, secret = values["dlq_raw_key"], str(values["pseudonym_secret"])
        if not key:
            raise ConfigError("invalid DLQ_RAW_KEY: required with DLQ_RAW=encrypted "
                              "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        if secret in (key.hex(), base64.b64encode(key).decode("ascii")) or key == secret.encode("utf-8"):
            raise ConfigError("invalid DLQ_RAW_KEY: must differ from PSEUDONYM_SECRET")
    check_kafka_security(values)
    if values["influx_transport"] == "v2" and not values["influx_bucket"]:
        raise ConfigError("invalid INFLUX_BUCKET: required with INFLUX_TRANSPORT=v2")
    # A transaction must outlive a checkpoint cycle plus the longest restart backoff, or the broker
    # aborts it while Flink still intends to commit it after recovery (data loss in exactly-once mode).
    needed_ms = 1000 * (
        values["checkpoint_interval_seconds"] + values["checkpoint_timeout_seconds"]
        + values["restart_max_backoff_seconds"]
    )
    if values["kafka_transaction_timeout_ms"] <= needed_ms:
        raise ConfigError(
            f"invalid KAFKA_TRANSACTION_TIMEOUT_MS: must exceed checkpoint interval + checkpoint timeout + "
            f"max restart backoff = {needed_ms:.0f} ms"
        )
    if values["output"] == "http" and not values["http_output_url"].startswith(("http://", "https://")):
        raise ConfigError("invalid HTTP_OUTPUT_URL: OUTPUT=http needs an http:// or https:// URL")
    if values["kafka_stop_at"] != "none" and values["cardio_branch"]:
        # The branch reads its global models back from Kafka, an input without end: a bounded job would wait for it.
        raise ConfigError("invalid KAFKA_STOP_AT: a backfill needs CARDIO_BRANCH=false (the cardio branch's "
                          "model input has no end)")
    start, stop = values["kafka_starting_offsets"], values["kafka_stop_at"]
    if isinstance(start, int) and isinstance(stop, int) and stop <= start:
        raise ConfigError("invalid KAFKA_STOP_AT: must be after KAFKA_STARTING_OFFSETS")
    if values["web_ui_port"] and not values["web_ui_port"].isdigit():
        raise ConfigError("invalid WEB_UI_PORT: must be a port number")
    if values["cardio_web_ui_port"] and not values["cardio_web_ui_port"].isdigit():
        raise ConfigError("invalid CARDIO_WEB_UI_PORT: must be a port number")
    if values["cardio_nice"] > 19:
        raise ConfigError("invalid CARDIO_NICE: 0..19 (the niceness a process can give itself)")
    if values["cardio_block_seconds"] > 60:
        raise ConfigError("invalid CARDIO_BLOCK_SECONDS: at most 60 (a block holds a device's frames in state)")
    if values["model_grace_seconds"] >= values["model_update_seconds"]:
        raise ConfigError("invalid MODEL_GRACE_SECONDS: must be below MODEL_UPDATE_SECONDS")
    hierarchy_path = Path(values["hierarchy_path"])
    if not hierarchy_path.is_absolute():
        hierarchy_path = PROJECT_ROOT / hierarchy_path
    if not hierarchy_path.exists():
        raise ConfigError(f"invalid HIERARCHY_PATH: {hierarchy_path} does not exist")
    return Settings(values=values, generated_secret=generated, sources=sources)


def check_kafka_security(values: Mapping[str, Any]) -> None:
    protocol = values["kafka_security_protocol"]
    if protocol.startswith("SASL_") and not (values["kafka_sasl_username"] and values["kafka_sasl_password"]):
        raise ConfigError(f"invalid KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD: KAFKA_SECURITY_PROTOCOL={protocol} "
                          "needs both")
    if bool(values["kafka_ssl_cert_file"]) != bool(values["kafka_ssl_key_file"]):
        raise ConfigError("invalid KAFKA_SSL_CERT_FILE / KAFKA_SSL_KEY_FILE: a client certificate needs both")
    for name in ("kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file"):
        path = values[name]
        if path and protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
            raise ConfigError(f"invalid {name.upper()}: KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS "
                              "(SSL or SASL_SSL does)")
        if path and not Path(path).is_file():
            raise ConfigError(f"invalid {name.upper()}: {path} is not a readable file")


# Options classes: frozen dataclasses whose field ``x`` is the setting ``SETTINGS_PREFIX + x`` (a class attribute,
# "" when absent), e.g. connectors.influxdb.InfluxOptions.
OptionsT = TypeVar("OptionsT", bound="DataclassInstance")


def option_settings(options_class: type[DataclassInstance]) -> dict[str, tuple[Setting, type]]:
    """Field name -> (its setting, the field's type) of an options class; KeyError names a field without one."""
    prefix = getattr(options_class, "SETTINGS_PREFIX", "")
    hints = typing.get_type_hints(options_class)
    mapping: dict[str, tuple[Setting, type]] = {}
    for option in dataclasses.fields(options_class):
        setting = _BY_ATTR.get(prefix + option.name)
        if setting is None:
            raise KeyError(f"{options_class.__name__}.{option.name}: no setting {(prefix + option.name).upper()}")
        mapping[option.name] = (setting, hints[option.name])
    return mapping


def options_from_settings(options_class: type[OptionsT], settings: Settings) -> OptionsT:
    """The options of ``options_class`` from the settings table, each value checked against its field's type:
    a renamed setting or a changed type fails here, when the job is built, not in an operator."""
    values: dict[str, Any] = {}
    for name, (setting, kind) in option_settings(options_class).items():
        value = settings.values[setting.attr]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise ConfigError(f"{options_class.__name__}.{name} is {kind.__name__}, setting {setting.env} gives "
                              f"{type(value).__name__}")
        values[name] = value
    return options_class(**values)


@dataclass(frozen=True)
class ComposeVariable:
    """A variable docker-compose.yml reads from `.env` for the containers around the job (never the job)."""

    env: str
    default: str
    help: str
    secret: bool = False


COMPOSE_VARIABLES: tuple[ComposeVariable, ...] = (
    ComposeVariable("PUBLISH_ADDRESS", "127.0.0.1",
                    "host address of the published web UI (8081), Grafana (3000) and Kafka's external SASL_SSL "
                    "listener for devices (9094); devices outside this host need an address they can reach"),
    ComposeVariable("KAFKA_EXTERNAL_HOST", "localhost",
                    "name or address devices use for the broker (port 9094; advertised to them, and it must be in "
                    "the broker's certificate: python -m devstack.secure_kafka --host NAME)"),
    ComposeVariable("KAFKA_ADMIN_PASSWORD", "",
                    "password of the broker's super user admin (init services only; required)", secret=True),
    ComposeVariable("KAFKA_DEVICE_PASSWORD", "",
                    "password of User:ecg-device (devices, the demo simulator: may only write the input topic; "
                    "required)", secret=True),
    ComposeVariable("KAFKA_READER_PASSWORD", "",
                    "password of User:ecg-reader (dashboards / analysts: read anomalies and model updates only; "
                    "empty: no such user)", secret=True),
    ComposeVariable("KAFKA_REPLAY_PASSWORD", "",
                    "password of User:ecg-replay (python -m replay: reads the dead letters and the input, owns the "
                    "<input>.replay-* topics; empty: no such user)", secret=True),
    ComposeVariable("TASKMANAGER_SLOTS", "2", "task slots per TaskManager container"),
    ComposeVariable("TASKMANAGER_MEMORY", "4096m", "taskmanager.memory.process.size per TaskManager container"),
    ComposeVariable("INFLUXDB_ADMIN_USER", "admin", "InfluxDB 2.x admin user (set at the first start)"),
    ComposeVariable("INFLUXDB_ADMIN_PASSWORD", "", "its password, 8+ characters (required)", secret=True),
    ComposeVariable("INFLUXDB_ADMIN_TOKEN", "", "InfluxDB 2.x admin (all-access) token, set at the first start "
                    "(required): only influxdb and influxdb-tokens get it; the job and Grafana get tokens of their "
                    "own (docker/influxdb/create-tokens.sh)", secret=True),
    ComposeVariable("INFLUXDB_RETENTION", "", "bucket retention, e.g. 90d (first start; empty = keep forever)"),
    ComposeVariable("GRAFANA_ADMIN_PASSWORD", "", "password of Grafana's user admin (required)", secret=True),
    ComposeVariable("SIMULATOR_PATIENTS", "40", "profile demo: virtual patients the simulator streams"),
)


def env_example() -> str:
    """The text of `.env.example`, generated from SETTINGS (and COMPOSE_VARIABLES) so that docs match the code."""
    lines = ["# ecg-flink-anon settings. Copy to .env; flags (--k-anonymity 10 ...) override.",
             "# A secret (PSEUDONYM_SECRET, INFLUX_TOKEN, KAFKA_SASL_PASSWORD, ...) may instead come from a file:",
             "# <NAME>_FILE=/run/secrets/<name> (its text; Docker secrets).", ""]
    for setting in SETTINGS:
        lines.append(f"# {setting.help}")
        if setting.default is None:
            lines.append(f"{setting.env}=")
        else:
            lines.append(f"{setting.env}={setting.default}")
    lines += ["", "# ---- docker-compose.yml only (the containers around the job; the job ignores these) ----",
              "# secrets: e.g. python3 -c 'import secrets; print(secrets.token_hex(32))'"]
    for variable in COMPOSE_VARIABLES:
        lines.append(f"# {variable.help}")
        lines.append(f"{variable.env}={variable.default}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(env_example(), end="")
