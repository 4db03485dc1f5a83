"""Static checks of the production files: docker-compose.yml, Dockerfile, the Grafana dashboard, *.md links.

Pure functions: each takes parsed data or text plus what it must agree with (the settings table, the
pins, the jar checksums ...) and returns a list of problems, empty when all is well. The tests run them
on the real files and on deliberately broken copies (tests/devstack/test_deployment_checks.py);
`compose_config()` is the one helper that runs a program (`docker-compose config`, no Docker engine needed).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Services that read the job's settings from their environment: the submitter (whose environment `flink run`
# hands to the job) and the simulator (same names for broker, topic and window).
SETTINGS_READERS = ("submit_job.py", "ecg_anonymization_job", "devstack.simulator")
JOB_SUBMITTERS = ("submit_job.py", "ecg_anonymization_job")

# Settings the compose file deliberately does not pass to the job, and why.
NOT_PASSED_IN_COMPOSE: Mapping[str, str] = {
    "WEB_UI_PORT": "embedded mini cluster only; the JobManager serves the web UI",
    "CARDIO_WEB_UI_PORT": "embedded mini cluster only; the JobManager serves the web UI of both jobs",
    "PYTHON_EXECUTABLE": "the image's /opt/venv/bin/python runs the job and its workers",
    "PYTHON_WORKERS": "embedded mini cluster only; a cluster's TaskManagers always start worker processes",
    "CSV_OUTPUT_DIR": "would write inside the TaskManager containers; mount a volume first",
    "KAFKA_SSL_CERT_FILE": "the compose broker authenticates clients by SCRAM (ssl.client.auth=none); for mutual "
                           "TLS mount the files into the submitter and pass them",
    "KAFKA_SSL_KEY_FILE": "see KAFKA_SSL_CERT_FILE",
    "KAFKA_SSL_KEY_PASSWORD": "see KAFKA_SSL_CERT_FILE",
    "INFLUX_INPUT_DB": "read by python -m backfill (an operator tool run on demand), never by the submitted jobs",
    "INFLUX_INPUT_BUCKET": "see INFLUX_INPUT_DB",
    "INFLUX_INPUT_MEASUREMENT": "see INFLUX_INPUT_DB",
    "INFLUX_INPUT_SLICE_SECONDS": "see INFLUX_INPUT_DB",
}

# Which services may see which secret. Everything else must never carry it (environment, command,
# Flink configuration).
SECRET_CONSUMERS: Mapping[str, frozenset[str]] = {
    "PSEUDONYM_SECRET": frozenset({"submitter"}),
    # InfluxDB: the job reads its own write-only token from a file (INFLUX_TOKEN_FILE), Grafana its read-only one;
    # the admin token reaches only InfluxDB's setup and the init that makes those tokens (check_influx_tokens).
    "INFLUX_TOKEN": frozenset(),
    "INFLUXDB_ADMIN_TOKEN": frozenset({"influxdb", "influxdb-tokens"}),
    "INFLUX_PASSWORD": frozenset({"submitter"}),
    "DLQ_RAW_KEY": frozenset({"submitter"}),
    "HTTP_OUTPUT_TOKEN": frozenset({"submitter"}),
    "INFLUXDB_ADMIN_PASSWORD": frozenset({"influxdb"}),
    "GRAFANA_ADMIN_PASSWORD": frozenset({"grafana"}),
    # Kafka: the job's SCRAM password reaches the job and the init that creates the user; the admin's only the
    # broker and the init services; the device password the init and the demo simulator (a device).
    "KAFKA_SASL_PASSWORD": frozenset({"submitter", "kafka-acls"}),
    "KAFKA_SSL_KEY_PASSWORD": frozenset({"submitter"}),
    "KAFKA_ADMIN_PASSWORD": frozenset({"kafka", "kafka-init", "kafka-acls"}),
    "KAFKA_DEVICE_PASSWORD": frozenset({"kafka-acls", "simulator"}),
    "KAFKA_READER_PASSWORD": frozenset({"kafka-acls"}),
    "KAFKA_REPLAY_PASSWORD": frozenset({"kafka-acls"}),
}

# Host ports a user needs: the Flink web UI, Grafana and Kafka's external SASL_SSL listener (devices). Nothing
# else is published.
PUBLISHED_PORTS = frozenset({("jobmanager", 8081), ("grafana", 3000), ("kafka", 9094)})

# Kafka clients of the compose stack and the principal each logs in as (ACLs: connectors/kafka_acls.py).
KAFKA_PRINCIPALS: Mapping[str, str] = {"submitter": "ecg-job", "simulator": "ecg-device", "kafka-acls": "admin"}

# The principals the ACL init creates (README, "Who can read what (Kafka)"): connectors.kafka_acls flag -> user.
KAFKA_ACL_USERS: Mapping[str, str] = {"--job-user": "ecg-job", "--device-user": "ecg-device",
                                      "--reader-user": "ecg-reader", "--replay-user": "ecg-replay"}

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# ---- helpers ----------------------------------------------------------------------------------------------


def compose_config(compose_file: Path, env_file: Path, *, docker_compose: str = "docker-compose") -> dict[str, Any]:
    """The resolved configuration (`docker-compose --env-file ENV -f FILE config`), parsed.

    Raises `subprocess.CalledProcessError` (with docker-compose's message in `stderr`) when the file is invalid.
    """
    import yaml

    completed = subprocess.run(
        [docker_compose, "--env-file", str(env_file), "-f", str(compose_file), "config"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    return dict(yaml.safe_load(completed.stdout))


def requirement_pins(requirements_text: str) -> dict[str, str]:
    """`name==version` lines of a requirements file (names lower-case, `_` as `-`)."""
    pins: dict[str, str] = {}
    for line in requirements_text.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)", line)
        if match:
            pins[_normalize(match[1])] = match[2]
    return pins


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def python_minor(requires_python: str) -> str | None:
    """`>=3.11,<3.12` -> `3.11` (the lower bound's major.minor)."""
    match = re.search(r">=\s*(\d+\.\d+)", requires_python)
    return match[1] if match else None


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):  # ["NAME=value", ...]
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {str(key): "" if value is None else str(value) for key, value in environment.items()}


def _command_text(service: Mapping[str, Any]) -> str:
    parts = []
    for key in ("entrypoint", "command"):
        value = service.get(key)
        if isinstance(value, list):
            parts.append(" ".join(str(item) for item in value))
        elif value:
            parts.append(str(value))
    return " ".join(parts)


def _services(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(name): dict(service or {}) for name, service in (config.get("services") or {}).items()}


# ---- docker-compose.yml -----------------------------------------------------------------------------------


def check_job_environment(config: Mapping[str, Any], setting_names: Iterable[str]) -> list[str]:
    """Every environment name of a service that reads settings is a setting of connectors/config.py."""
    names = set(setting_names)
    problems: list[str] = []
    readers = 0
    submitters = 0
    for name, service in _services(config).items():
        command = _command_text(service)
        if not any(marker in command for marker in SETTINGS_READERS):
            continue
        readers += 1
        submitters += any(marker in command for marker in JOB_SUBMITTERS)
        for variable in sorted(_environment(service)):
            if variable not in names and variable.removesuffix("_FILE") not in names:
                problems.append(f"service {name}: environment {variable} is not a setting in connectors/config.py")
    if not submitters:
        problems.append("no service submits the job (a command with submit_job.py or ecg_anonymization_job)")
    return problems


def check_settings_passed(config: Mapping[str, Any], setting_names: Iterable[str]) -> list[str]:
    """Every setting reaches the job (so a line of .env is never silently ignored), except NOT_PASSED_IN_COMPOSE."""
    passed: set[str] = set()
    for service in _services(config).values():
        if any(marker in _command_text(service) for marker in JOB_SUBMITTERS):
            passed |= {name.removesuffix("_FILE") if name.endswith("_FILE") else name for name in _environment(service)}
            passed |= set(_environment(service))
    return [
        f"setting {name} is not passed to the job: add `{name}: ${{{name}:-<default>}}` to x-job-settings in "
        f"docker-compose.yml (or to NOT_PASSED_IN_COMPOSE with a reason)"
        for name in setting_names
        if name not in passed and name not in NOT_PASSED_IN_COMPOSE
    ]


def check_variable_defaults(
    compose_text: str,
    setting_defaults: Mapping[str, str | None],
    compose_defaults: Mapping[str, str],
    secret_names: Iterable[str],
) -> list[str]:
    """`${NAME:-default}` in docker-compose.yml: NAME is in .env.example (a setting or a compose variable), the
    default equals the table's, and a secret has no default (it is required: `${NAME:?message}`) unless its
    table default is empty too."""
    known: dict[str, str | None] = {**setting_defaults, **compose_defaults}
    secrets = set(secret_names)
    problems: list[str] = []
    for match in _VARIABLE.finditer(compose_text):
        name, operator, value = match[1], match[2], match[3]
        if name not in known:
            problems.append(f"${{{name}}} is neither a setting nor a compose variable (missing in .env.example)")
            continue
        if operator in (":-", "-"):
            expected = known[name] or ""
            if value != expected:
                problems.append(f"${{{name}:-{value}}}: the default must be {expected!r} as in .env.example")
            if name in secrets and value:
                problems.append(f"secret {name} must not have a default")
        elif operator is None and name in secrets:
            problems.append(f"secret {name} must be required (${{{name}:?...}}) or default to empty")
    return problems


def check_hardening(config: Mapping[str, Any], secret_values: Mapping[str, str]) -> list[str]:
    """Web submission off, secrets only where needed, only the user-facing ports published, no root, scalable
    TaskManagers, start order by healthchecks, checkpoints on a shared named volume."""
    services = _services(config)
    problems: list[str] = []

    jobmanager = services.get("jobmanager", {})
    properties = _environment(jobmanager).get("FLINK_PROPERTIES", "")
    if not re.search(r"^\s*web\.submit\.enable:\s*false\s*$", properties, re.MULTILINE):
        problems.append("jobmanager: FLINK_PROPERTIES must set `web.submit.enable: false` (no jar upload in the UI)")

    for secret, value in secret_values.items():
        if not value:
            continue
        allowed = SECRET_CONSUMERS.get(secret, frozenset())
        for name, service in services.items():
            exposed = [key for key, text in _environment(service).items() if value in text]
            if value in _command_text(service):
                exposed.append("command")
            if exposed and name not in allowed:
                problems.append(f"secret {secret} reaches service {name} ({', '.join(exposed)})")
            if "FLINK_PROPERTIES" in exposed:
                problems.append(f"secret {secret} is in the Flink configuration of service {name}")

    published: set[tuple[str, int]] = set()
    for name, service in services.items():
        for port in service.get("ports") or []:
            target, host_ip = _port(port)
            published.add((name, target))
            if host_ip in ("", "0.0.0.0", "::"):
                problems.append(f"service {name}: port {target} is published on all interfaces (use PUBLISH_ADDRESS)")
    for name, target in sorted(published - PUBLISHED_PORTS):
        problems.append(f"service {name}: port {target} is published; only {sorted(PUBLISHED_PORTS)} may be")
    for name, target in sorted(PUBLISHED_PORTS - published):
        problems.append(f"service {name}: port {target} is not published")

    for name, service in services.items():
        if str(service.get("user", "")).split(":")[0] in ("root", "0"):
            problems.append(f"service {name} runs as root")
        for dependency, condition in _depends_on(service).items():
            # (`docker-compose config` turns a plain list entry into service_started.)
            if condition not in ("service_healthy", "service_completed_successfully"):
                problems.append(f"service {name}: depends_on {dependency} only waits for {condition}")
            elif condition == "service_healthy" and not _has_healthcheck(services.get(dependency, {})):
                problems.append(f"service {name} waits for {dependency} to be healthy, which has no healthcheck")
        if service.get("restart", "no") != "no" and not _has_healthcheck(service):
            problems.append(f"long-running service {name} has no healthcheck")

    taskmanager = services.get("taskmanager")
    if taskmanager is None:
        problems.append("no taskmanager service (docker-compose up --scale taskmanager=N)")
    elif taskmanager.get("container_name") or taskmanager.get("ports") or taskmanager.get("hostname"):
        problems.append("taskmanager cannot be scaled: no container_name, hostname or ports allowed")

    problems += _check_checkpoint_volume(services)
    return problems


def _has_healthcheck(service: Mapping[str, Any]) -> bool:
    healthcheck = service.get("healthcheck") or {}
    test = healthcheck.get("test") or []
    return bool(test) and test[0] != "NONE" and not healthcheck.get("disable")  # config shows `disable` as NONE


def _port(port: Any) -> tuple[int, str]:
    """(target port, host ip) of a short (`"127.0.0.1:8081:8081"`) or long port entry."""
    if isinstance(port, Mapping):
        return int(port.get("target", 0)), str(port.get("host_ip", ""))
    parts = str(port).split("/")[0].split(":")
    host_ip = parts[0] if len(parts) == 3 else ""
    return int(parts[-1]), host_ip


def _depends_on(service: Mapping[str, Any]) -> dict[str, str | None]:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return {str(name): None for name in depends}
    return {str(name): (spec or {}).get("condition") for name, spec in depends.items()}


def _check_checkpoint_volume(services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    submitters = [s for s in services.values() if any(m in _command_text(s) for m in JOB_SUBMITTERS)]
    checkpoint_dir = next((_environment(s).get("CHECKPOINT_DIR") for s in submitters), None)
    if not checkpoint_dir:
        return ["the job's CHECKPOINT_DIR is not set in docker-compose.yml"]
    problems = []
    for name in ("jobmanager", "taskmanager", "submitter"):
        mounts = [_volume(v) for v in services.get(name, {}).get("volumes") or []]
        if not any(kind == "volume" and target == checkpoint_dir for kind, target in mounts):
            problems.append(f"service {name}: no named volume at CHECKPOINT_DIR {checkpoint_dir}")
    return problems


def _volume(volume: Any) -> tuple[str, str]:
    """(type, target) of a short (`name:/path[:mode]`) or long volume entry."""
    if isinstance(volume, Mapping):
        return str(volume.get("type", "")), str(volume.get("target", ""))
    source, target = [*str(volume).split(":"), ""][:2]
    return ("bind" if source.startswith((".", "/", "~")) else "volume"), target


def check_kafka_security(config: Mapping[str, Any], broker_script: str) -> list[str]:
    """Kafka in the compose stack is secured: every client listener of the broker (docker/kafka/start-broker.sh)
    is SASL_SSL with ACLs enforced and no one allowed by default, the controller listener stays inside the
    container, every Kafka client service logs in over SASL_SSL as its own principal, and the ACL init
    (connectors.kafka_acls) runs before the job and the simulator."""
    services = _services(config)
    problems: list[str] = []
    properties = dict(line.split("=", 1) for line in broker_script.splitlines() if re.match(r"^[a-z.-]+=", line))
    protocols = dict(entry.split(":", 1) for entry in properties.get("listener.security.protocol.map", "").split(","))
    for listener, protocol in sorted(protocols.items()):
        if listener != properties.get("controller.listener.names") and protocol != "SASL_SSL":
            problems.append(f"kafka: listener {listener} is {protocol}, not SASL_SSL")
    if "CONTROLLER://127.0.0.1:" not in properties.get("listeners", ""):
        problems.append("kafka: the controller listener must be bound to 127.0.0.1 inside the container")
    if not properties.get("authorizer.class.name", "").endswith("StandardAuthorizer"):
        problems.append("kafka: no StandardAuthorizer (ACLs not enforced)")
    if properties.get("allow.everyone.if.no.acl.found") != "false":
        problems.append("kafka: allow.everyone.if.no.acl.found must be false")
    if properties.get("super.users") != "User:admin":
        problems.append(f"kafka: super.users is {properties.get('super.users')!r}, must be User:admin alone")
    for name, principal in KAFKA_PRINCIPALS.items():
        service = services.get(name)
        if service is None:
            if name != "simulator":  # a profile
                problems.append(f"no {name} service")
            continue
        environment = _environment(service)
        if environment.get("KAFKA_SECURITY_PROTOCOL") != "SASL_SSL":
            problems.append(f"service {name}: KAFKA_SECURITY_PROTOCOL is not SASL_SSL")
        if environment.get("KAFKA_SASL_USERNAME") != principal:
            problems.append(f"service {name}: Kafka user {environment.get('KAFKA_SASL_USERNAME')!r}, "
                            f"expected {principal}")
    acls = services.get("kafka-acls", {})
    if "connectors.kafka_acls" not in _command_text(acls):
        problems.append("service kafka-acls does not run connectors.kafka_acls")
    for flag, user in KAFKA_ACL_USERS.items():
        if f"{flag} {user}" not in _command_text(acls):
            problems.append(f"service kafka-acls does not grant {user} ({flag} {user})")
    for name in ("submitter", "simulator"):
        if name in services and _depends_on(services[name]).get("kafka-acls") != "service_completed_successfully":
            problems.append(f"service {name} does not wait for kafka-acls")
    return problems


def _volume_mounts(service: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    """Named volumes of a service: container path -> (volume, read-only)."""
    mounts: dict[str, tuple[str, bool]] = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, Mapping):
            if volume.get("type", "volume") == "volume" and volume.get("source"):
                mounts[str(volume["target"])] = (str(volume["source"]), bool(volume.get("read_only")))
        else:
            parts = str(volume).split(":")
            if len(parts) >= 2 and not parts[0].startswith((".", "/", "~")):
                mounts[parts[1]] = (parts[0], len(parts) > 2 and "ro" in parts[2].split(","))
    return mounts


def _volume_of(service: Mapping[str, Any], path: str) -> tuple[str, bool] | None:
    """The named volume (and whether it is read-only) that holds ``path`` in ``service``."""
    for target, mount in _volume_mounts(service).items():
        if path.startswith(target.rstrip("/") + "/"):
            return mount
    return None


def _token_calls(script_text: str) -> dict[str, list[str]]:
    """`token "${X_TOKEN_FILE}" <description> <permission flags>` lines of create-tokens.sh: description -> flags;
    also `bucket:<variable>` -> [the bucket variable] for `<variable>="$(bucket_id "${BUCKET}")"`."""
    import shlex

    calls: dict[str, list[str]] = {}
    for line in script_text.splitlines():
        line = line.split(" #", 1)[0].strip()
        match = re.fullmatch(r'(\w+)="\$\(bucket_id "\$\{(\w+)\}"\)"', line)
        if match:
            calls[f"bucket:{match[1]}"] = [match[2]]
            continue
        if line.startswith("token "):
            words = shlex.split(line, posix=False)
            calls[words[2]] = [word.strip('"') for word in words[3:]]
    return calls


JOB_TOKEN_PERMISSIONS = ["--write-bucket", "${main_id}", "--write-bucket", "${branch_id}"]
GRAFANA_TOKEN_PERMISSIONS = ["--read-bucket", "${main_id}"]


def check_influx_tokens(config: Mapping[str, Any], script_text: str, datasource: Mapping[str, Any]) -> list[str]:
    """InfluxDB least privilege (issue 22 item 3): the job writes with a write-only token of its two buckets and never
    gets the admin token; Grafana reads with a read-only token of the anonymized bucket alone (not the branch bucket
    of per-patient statistics); the influxdb-tokens service (docker/influxdb/create-tokens.sh) makes both, each on a
    volume that only it and the token's user mount."""
    services = _services(config)
    problems: list[str] = []
    init = services.get("influxdb-tokens")
    submitter_name = next((name for name, service in services.items()
                           if any(marker in _command_text(service) for marker in JOB_SUBMITTERS)), "")
    submitter = services.get(submitter_name)
    grafana = services.get("grafana")
    if init is None or submitter is None or grafana is None:
        return ["no influxdb-tokens, submitter or grafana service"]
    if "create-tokens.sh" not in _command_text(init):
        problems.append("service influxdb-tokens does not run docker/influxdb/create-tokens.sh")
    init_env, job_env, grafana_env = _environment(init), _environment(submitter), _environment(grafana)

    # the job: its own token from a file, no admin token, the branch statistics in the bucket of their own
    if job_env.get("INFLUX_TOKEN"):
        problems.append("the job gets INFLUX_TOKEN (the admin token?): it must read its own from INFLUX_TOKEN_FILE")
    job_file = job_env.get("INFLUX_TOKEN_FILE", "")
    job_volume = _volume_of(submitter, job_file)
    if job_volume is None or not job_volume[1]:
        problems.append(f"the job's INFLUX_TOKEN_FILE {job_file!r} is not on a read-only named volume")
    if not job_env.get("INFLUX_BRANCH_BUCKET") or job_env.get("INFLUX_BRANCH_BUCKET") == job_env.get("INFLUX_BUCKET"):
        problems.append("the job must write the branch's per-patient statistics to INFLUX_BRANCH_BUCKET, a bucket "
                        "other than INFLUX_BUCKET")
    if (init_env.get("ECG_BUCKET"), init_env.get("ECG_BRANCH_BUCKET")) != (job_env.get("INFLUX_BUCKET"),
                                                                           job_env.get("INFLUX_BRANCH_BUCKET")):
        problems.append("influxdb-tokens: ECG_BUCKET / ECG_BRANCH_BUCKET are not the job's INFLUX_BUCKET / "
                        "INFLUX_BRANCH_BUCKET")
    init_job = _volume_of(init, init_env.get("JOB_TOKEN_FILE", ""))
    init_grafana = _volume_of(init, init_env.get("GRAFANA_TOKEN_FILE", ""))
    if job_volume is None or init_job is None or init_job[0] != job_volume[0] or (
            Path(init_env.get("JOB_TOKEN_FILE", "")).name != Path(job_file).name):
        problems.append("the job's INFLUX_TOKEN_FILE is not the JOB_TOKEN_FILE influxdb-tokens writes")

    # Grafana: the read token, through its datasource
    entries = [entry for entry in datasource.get("datasources") or [] if entry.get("type") == "influxdb"]
    entry = entries[0] if entries else {}
    header = str((entry.get("jsonData") or {}).get("httpHeaderName1", ""))
    value = str((entry.get("secureJsonData") or {}).get("httpHeaderValue1", ""))
    match = re.fullmatch(r"Token \$__file\{([^}]+)\}", value)
    if header != "Authorization" or match is None:
        problems.append("Grafana's datasource does not authenticate with `Authorization: Token $__file{...}`")
    elif (_volume_of(grafana, match[1]) is None or init_grafana is None
          or _volume_of(grafana, match[1]) != (init_grafana[0], True)
          or Path(match[1]).name != Path(init_env.get("GRAFANA_TOKEN_FILE", "")).name):
        problems.append("Grafana's datasource token is not the GRAFANA_TOKEN_FILE influxdb-tokens writes (read-only)")
    if entry.get("user") or (entry.get("secureJsonData") or {}).get("password"):
        problems.append("Grafana's datasource logs in with a user and password, not its read-only token")
    if (entry.get("jsonData") or {}).get("dbName") != "$INFLUX_BUCKET" or (
            grafana_env.get("INFLUX_BUCKET") != job_env.get("INFLUX_BUCKET")):
        problems.append("Grafana's datasource does not read the job's anonymized bucket INFLUX_BUCKET")

    # each token volume: only the init and the token's user
    for name, service in services.items():
        for volume, _ in _volume_mounts(service).values():
            if init_job and volume == init_job[0] and name not in ("influxdb-tokens", submitter_name):
                problems.append(f"service {name} mounts the job's token volume {volume}")
            if init_grafana and volume == init_grafana[0] and name not in ("influxdb-tokens", "grafana"):
                problems.append(f"service {name} mounts Grafana's token volume {volume}")
    for name in ("grafana", submitter_name):
        if _depends_on(services[name]).get("influxdb-tokens") != "service_completed_successfully":
            problems.append(f"service {name} does not wait for influxdb-tokens")

    # the script: exactly these permissions, nothing else
    calls = _token_calls(script_text)
    if calls.get("bucket:main_id") != ["ECG_BUCKET"] or calls.get("bucket:branch_id") != ["ECG_BRANCH_BUCKET"]:
        problems.append("create-tokens.sh: main_id / branch_id are not the ids of ECG_BUCKET / ECG_BRANCH_BUCKET")
    if calls.get("ecg-job") != JOB_TOKEN_PERMISSIONS:
        problems.append(f"create-tokens.sh: the job's token has {calls.get('ecg-job')}, must be exactly "
                        f"{JOB_TOKEN_PERMISSIONS}")
    if calls.get("ecg-grafana") != GRAFANA_TOKEN_PERMISSIONS:
        problems.append(f"create-tokens.sh: Grafana's token has {calls.get('ecg-grafana')}, must be exactly "
                        f"{GRAFANA_TOKEN_PERMISSIONS}")
    creates = [line for line in script_text.splitlines()  # commands, not comments or messages
               if "influx auth create" in line and not re.match(r"\s*(#|echo\b)", line)]
    if len(creates) != 1 or re.search(r"--(all-access|operator|read-|write-)", creates[0]):
        problems.append("create-tokens.sh: `influx auth create` must appear once, with only the permissions of "
                        "`token` (\"$@\")")
    return problems


def check_topics(config: Mapping[str, Any], topics: Mapping[str, int], topic_config: Mapping[str, str]) -> list[str]:
    """The kafka-init service creates the topics (name -> partitions) and configuration the job needs
    (devstack.stack.DEFAULT_TOPICS / DEFAULT_TOPIC_CONFIG)."""
    init = _services(config).get("kafka-init")
    if init is None:
        return ["no kafka-init service"]
    environment = _environment(init)
    created: dict[str, int] = {}
    for spec in environment.get("ECG_TOPICS", "").split():
        name, _, partitions = spec.partition(":")
        created[name] = int(partitions) if partitions.isdigit() else -1
    configured = dict(entry.split("=", 1) for entry in environment.get("TOPIC_CONFIG", "").split() if "=" in entry)
    problems = [
        f"kafka-init: topic {name} with {created.get(name, 'no')} partitions, the job needs {partitions}"
        for name, partitions in topics.items()
        if created.get(name) != partitions
    ]
    problems += [f"kafka-init: creates {name}, which the job does not use" for name in created if name not in topics]
    if configured != dict(topic_config):
        problems.append(f"kafka-init: topic configuration {configured}, the job needs {dict(topic_config)}")
    return problems


# ---- Dockerfile -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JarPin:
    name: str  # file name, e.g. flink-connector-kafka.jar
    artifact: str  # Maven coordinates groupId:artifactId:version
    sha256: str


def dockerfile_args(dockerfile_text: str) -> dict[str, str]:
    """`ARG NAME=value` defaults (all stages; a later one wins)."""
    return {m[1]: m[2].strip().strip('"') for m in re.finditer(r"^\s*ARG\s+(\w+)=(\S+)", dockerfile_text, re.M)}


def check_dockerfile(
    dockerfile_text: str,
    *,
    requirements_text: str,
    requires_python: str,
    jars: Sequence[JarPin],
    secret_names: Iterable[str],
) -> list[str]:
    """The image is built from the versions the repository pins (requirements.txt, pyproject.toml,
    connectors/jars.py), runs as a non-root user and never receives a secret."""
    problems: list[str] = []
    args = dockerfile_args(dockerfile_text)
    pins = requirement_pins(requirements_text)

    flink = pins.get("apache-flink")
    if args.get("FLINK_VERSION") != flink:
        problems.append(f"Dockerfile FLINK_VERSION={args.get('FLINK_VERSION')}, requirements.txt apache-flink=={flink}")
    froms = re.findall(r"^\s*FROM\s+(\S+)", dockerfile_text, re.M)
    if not any(re.match(r"flink:(\$\{FLINK_VERSION\}|" + re.escape(str(flink)) + r")-", image) for image in froms):
        problems.append("Dockerfile: no stage is built FROM flink:${FLINK_VERSION}-... (the official Flink image)")
    if args.get("PYTHON_VERSION") != python_minor(requires_python):
        problems.append(f"Dockerfile PYTHON_VERSION={args.get('PYTHON_VERSION')}, pyproject.toml requires-python "
                        f"{requires_python}")
    expected_args: set[str] = set()
    for jar in jars:
        prefix = jar.name.removesuffix(".jar").upper().replace("-", "_")
        expected_args |= {f"{prefix}_ARTIFACT", f"{prefix}_SHA256"}
        if args.get(f"{prefix}_ARTIFACT") != jar.artifact:
            problems.append(f"Dockerfile {prefix}_ARTIFACT={args.get(f'{prefix}_ARTIFACT')}, connectors/jars.py "
                            f"{jar.artifact}")
        if args.get(f"{prefix}_SHA256") != jar.sha256:
            problems.append(f"Dockerfile {prefix}_SHA256={args.get(f'{prefix}_SHA256')}, connectors/jars.py "
                            f"{jar.sha256}")
        if f"${{{prefix}_SHA256}}" not in dockerfile_text:
            problems.append(f"Dockerfile never checks {prefix}_SHA256")
    for name in sorted(set(args) - expected_args):
        if name.endswith(("_SHA256", "_ARTIFACT")):
            problems.append(f"Dockerfile {name} belongs to no jar of connectors/jars.py")

    if not re.search(r"^\s*COPY\s+requirements\.txt\s", dockerfile_text, re.M) or "pip install" not in dockerfile_text:
        problems.append("Dockerfile does not pip install requirements.txt")
    for name, version in re.findall(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)", dockerfile_text):
        pinned = pins.get(_normalize(name))
        if pinned is not None and pinned != version:
            problems.append(f"Dockerfile pins {name}=={version}, requirements.txt {pinned}")

    users = re.findall(r"^\s*USER\s+(\S+)", dockerfile_text.split("\nFROM ")[-1], re.M)
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("Dockerfile: the final stage must switch to a non-root USER")
    if re.search(r"^\s*(COPY|ADD)\s+(--\S+\s+)*(\.|\./|\.env\S*)\s", dockerfile_text, re.M):
        problems.append("Dockerfile copies the whole context or .env (explicit COPYs only; secrets stay in .env)")
    for secret in secret_names:
        if re.search(rf"\b{re.escape(secret)}\b", dockerfile_text):
            problems.append(f"Dockerfile mentions secret {secret}")
    return problems


@dataclass(frozen=True)
class CopyLine:
    """One COPY instruction: what it takes (from the build context, or from stage ``from_stage``) and where to."""

    sources: tuple[str, ...]
    destination: str
    from_stage: str | None = None


def dockerfile_stages(dockerfile_text: str) -> dict[str, tuple[str | None, list[str]]]:
    """Stage name (its ``AS`` name, else its index) -> (the stage of this file it is built FROM, if any,
    its instructions with continuation lines joined and comments dropped)."""
    instructions: list[str] = []
    pending = ""
    for line in dockerfile_text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):  # comments may sit inside a continued instruction
            continue
        pending += " " + stripped.removesuffix("\\")
        if not stripped.endswith("\\"):
            instructions.append(pending.strip())
            pending = ""
    stages: dict[str, tuple[str | None, list[str]]] = {}
    current: list[str] = []
    for instruction in instructions:
        match = re.fullmatch(r"FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", instruction, re.I)
        if match:
            current = []
            base = match[1] if match[1] in stages else None
            stages[match[2] or str(len(stages))] = (base, current)
        else:
            current.append(instruction)
    return stages


def stage_copies(dockerfile_text: str, stage: str) -> list[CopyLine]:
    """The COPY lines that make up ``stage``: those of the stages it is built FROM first, then its own."""
    stages = dockerfile_stages(dockerfile_text)
    if stage not in stages:
        raise KeyError(f"Dockerfile has no stage {stage!r} (stages: {', '.join(stages)})")
    base, instructions = stages[stage]
    copies = stage_copies(dockerfile_text, base) if base is not None else []
    for instruction in instructions:
        words = instruction.split()
        if words[0].upper() != "COPY":
            continue
        options = [word for word in words[1:] if word.startswith("--")]
        paths = [word for word in words[1:] if not word.startswith("--")]
        from_stage = next((option.split("=", 1)[1] for option in options if option.startswith("--from=")), None)
        copies.append(CopyLine(tuple(paths[:-1]), paths[-1], from_stage))
    return copies


def check_image_code(dockerfile_text: str, stage: str, packages: Iterable[str], *, root: str = "/opt/ecg",
                     scripts: Iterable[str] = ()) -> list[str]:
    """Stage ``stage`` copies into ``root`` exactly ``packages`` (flink_jobs/shipping.py computes them from
    the imports) and the folders of ``scripts``, each under its own name, and no other code of the context."""
    problems: list[str] = []
    copied: set[str] = set()
    for copy in stage_copies(dockerfile_text, stage):
        if copy.from_stage is not None or not copy.destination.startswith(root + "/"):
            continue
        for source in copy.sources:
            name = source.strip("/")
            copied.add(name)
            if copy.destination.rstrip("/") != f"{root}/{name}":
                problems.append(f"Dockerfile stage {stage}: COPY {source} {copy.destination}: a folder goes to "
                                f"{root}/{name}, under its own name")
    wanted = set(packages) | set(scripts)
    for name in sorted(wanted - copied):
        problems.append(f"Dockerfile stage {stage}: does not copy {name} into {root}, which it needs")
    for name in sorted(copied - wanted):
        problems.append(f"Dockerfile stage {stage}: copies {name} into {root}, which it does not need")
    return problems


def check_dockerignore(dockerignore_text: str) -> list[str]:
    entries = {line.strip() for line in dockerignore_text.splitlines()}
    return [] if ".env" in entries else [".dockerignore must exclude .env from every build context"]


# ---- Grafana dashboard ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    panel_id: int | str  # a panel id, or "var:<name>" for a template variable
    title: str
    query: str

    @property
    def measurement(self) -> str | None:
        match = re.search(r'\bFROM\s+"([^"]+)"', self.query, re.IGNORECASE)
        return match[1] if match else None


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    """Every InfluxQL query of the dashboard: panel targets (rows' nested panels too) and template variables."""
    queries: list[PanelQuery] = []

    def visit(panels: Iterable[Mapping[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets") or []:
                queries.append(PanelQuery(panel["id"], str(panel.get("title", "")), str(target.get("query", ""))))
            visit(panel.get("panels") or [])

    visit(dashboard.get("panels") or [])
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") == "query":
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, Mapping) else str(query or "")
            queries.append(PanelQuery(f"var:{variable['name']}", f"variable {variable['name']}", text))
    return queries


# The cardio branch's per-patient statistics (operators/anomaly_models.py), in INFLUX_BRANCH_BUCKET: Grafana's
# read-only token cannot read them, so the provisioned dashboard must not ask (its panels would stay empty).
BRANCH_MEASUREMENTS = frozenset({"ecg_anomaly_stats", "ecg_model_stats"})


def check_dashboard(dashboard: Mapping[str, Any], datasource_uid: str,
                    unreadable_measurements: Iterable[str] = ()) -> list[str]:
    """Structure: every panel query is raw InfluxQL on the provisioned datasource, bounded by $timeFilter, and
    reads no measurement the datasource's token cannot read (``unreadable_measurements``)."""
    problems: list[str] = []
    unreadable = frozenset(unreadable_measurements)
    for query in dashboard_queries(dashboard):
        if query.measurement in unreadable:
            problems.append(f"panel {query.title!r} reads {query.measurement}, which its datasource cannot read")

    def visit(panels: Iterable[Mapping[str, Any]]) -> None:
        for panel in panels:
            if panel.get("type") != "row":
                targets = panel.get("targets") or []
                if not targets:
                    problems.append(f"panel {panel.get('title')!r} has no query")
                for target in targets:
                    uid = (target.get("datasource") or panel.get("datasource") or {}).get("uid")
                    if uid != datasource_uid:
                        problems.append(
                            f"panel {panel.get('title')!r}: datasource {uid!r}, provisioned {datasource_uid!r}"
                        )
                    if not target.get("rawQuery") or not str(target.get("query", "")).strip():
                        problems.append(f"panel {panel.get('title')!r}: not a raw InfluxQL query")
                    elif "$timeFilter" not in target["query"]:
                        problems.append(f"panel {panel.get('title')!r}: query without $timeFilter")
            visit(panel.get("panels") or [])

    visit(dashboard.get("panels") or [])
    return problems


def render_query(query: str, *, start_ms: int, end_ms: int, interval: str, variables: Mapping[str, str]) -> str:
    """The query as Grafana sends it to InfluxDB: `$timeFilter`, `$__interval` and variables expanded."""
    text = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    text = text.replace("$__interval", interval).replace("$interval", interval)
    for name in sorted(variables, key=len, reverse=True):
        text = text.replace(f"${{{name}}}", variables[name]).replace(f"${name}", variables[name])
    return text


def load_dashboard(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


# ---- Markdown links ---------------------------------------------------------------------------------------

_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")


def markdown_links(text: str) -> list[str]:
    """Link targets of a Markdown text, outside code blocks and inline code."""
    text = _INLINE_CODE.sub("", _FENCE.sub("", text))
    return _INLINE_LINK.findall(text) + _REFERENCE_LINK.findall(text)


def check_markdown_links(repo_root: Path, markdown_files: Iterable[Path]) -> list[str]:
    """Relative links resolve to a file or folder inside the repository (a fresh clone has no ../shared)."""
    root = repo_root.resolve()
    problems: list[str] = []
    for path in markdown_files:
        for target in markdown_links(path.read_text(errors="replace")):
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:", target) or target.startswith("#"):
                continue  # http:, mailto:, ... and anchors in the same file
            relative = target.split("#", 1)[0].split("?", 1)[0]
            resolved = (path.parent / relative).resolve() if not relative.startswith("/") else Path(relative)
            where = f"{path.relative_to(root) if path.resolve().is_relative_to(root) else path}: {target}"
            if not resolved.is_relative_to(root):
                problems.append(f"{where} points outside the repository")
            elif not resolved.exists():
                problems.append(f"{where} does not exist")
    return problems
