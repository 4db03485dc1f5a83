"""The production files agree with the code (no Docker engine needed; `docker-compose config` is enough).

Every check runs on the real file and on a deliberately broken copy, so a check that cannot fail would show.
The settings table, pins and checksums are read at test time from connectors/ and requirements.txt.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectors.config import COMPOSE_VARIABLES, PROJECT_ROOT, SETTINGS, env_example
from connectors.jars import CONNECTOR_JARS
from devstack import deployment_checks as checks
from devstack.stack import DEFAULT_TOPIC_CONFIG, DEFAULT_TOPICS, KAFKA_VERSION
from flink_jobs.shipping import image_packages, job_packages

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DASHBOARD = PROJECT_ROOT / "docker" / "grafana" / "dashboards" / "ecg-anonymization.json"
OPTIONAL_DASHBOARD = PROJECT_ROOT / "docker" / "grafana" / "optional" / "ecg-cardio-branch.json"
DATASOURCE = PROJECT_ROOT / "docker" / "grafana" / "provisioning" / "datasources" / "influxdb.yml"

SECRET_NAMES = [s.env for s in SETTINGS if s.secret] + [v.env for v in COMPOSE_VARIABLES if v.secret]
# Distinct, recognizable values, so the resolved configuration shows where each secret goes.
# (Numbered, so no value contains another.)
SECRET_VALUES = {name: f"s3cret-{index:02d}-value-0123456789" for index, name in enumerate(SECRET_NAMES)}

pytestmark = pytest.mark.skipif(shutil.which("docker-compose") is None,
                                reason="docker-compose missing: run scripts/setup.sh")


def env_file(directory: Path, **overrides: str) -> Path:
    """`.env` as a user makes it: .env.example (generated from the live tables) with the secrets filled in."""
    values = {**SECRET_VALUES, **overrides}
    lines = []
    for line in env_example().splitlines():
        name = line.split("=", 1)[0]
        lines.append(f"{name}={values[name]}" if "=" in line and not line.startswith("#") and name in values else line)
    path = directory / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


def resolved(tmp_path: Path, edit: Callable[[str], str] | None = None) -> dict[str, Any]:
    """`docker-compose config` of the real file, or of an edited copy in tmp_path."""
    compose = COMPOSE_FILE
    if edit is not None:
        text = COMPOSE_FILE.read_text()
        changed = edit(text)
        assert changed != text, "the edit did not change the file"
        compose = tmp_path / "docker-compose.yml"
        compose.write_text(changed)
    return checks.compose_config(compose, env_file(tmp_path))


def setting_names() -> list[str]:
    return [setting.env for setting in SETTINGS]


# ---- docker-compose.yml ------------------------------------------------------------------------------------


def test_compose_config_is_valid_and_requires_the_secrets(tmp_path: Path) -> None:
    run = subprocess.run(["docker-compose", "--env-file", str(env_file(tmp_path)), "-f", str(COMPOSE_FILE),
                          "config", "-q"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    # .env.example as shipped (secrets empty) must not start: compose names the missing secret.
    bare = subprocess.run(["docker-compose", "--env-file", str(PROJECT_ROOT / ".env.example"), "-f",
                           str(COMPOSE_FILE), "config", "-q"], capture_output=True, text=True, check=False)
    assert bare.returncode != 0
    assert "set " in bare.stderr and "in .env" in bare.stderr, bare.stderr


def test_job_environment_names_are_settings(tmp_path: Path) -> None:
    assert checks.check_job_environment(resolved(tmp_path), setting_names()) == []
    broken = resolved(tmp_path, lambda t: t.replace("  K_ANONYMITY: ${K_ANONYMITY", "  K_ANONIMITY: ${K_ANONYMITY"))
    assert checks.check_job_environment(broken, setting_names()) == [
        "service submitter: environment K_ANONIMITY is not a setting in connectors/config.py"]


def test_every_setting_reaches_the_job(tmp_path: Path) -> None:
    assert checks.check_settings_passed(resolved(tmp_path), setting_names()) == []
    broken = resolved(tmp_path, lambda text: text.replace("  KAFKA_DELIVERY: ${KAFKA_DELIVERY:-at-least-once}\n", ""))
    problems = checks.check_settings_passed(broken, setting_names())
    assert len(problems) == 1 and problems[0].startswith("setting KAFKA_DELIVERY is not passed"), problems


def test_variable_defaults_match_env_example() -> None:
    setting_defaults = {setting.env: setting.default for setting in SETTINGS}
    compose_defaults = {variable.env: variable.default for variable in COMPOSE_VARIABLES}
    text = COMPOSE_FILE.read_text()
    assert checks.check_variable_defaults(text, setting_defaults, compose_defaults, SECRET_NAMES) == []
    broken = text.replace("${K_ANONYMITY:-5}", "${K_ANONYMITY:-3}").replace(
        "${PSEUDONYM_SECRET:?set PSEUDONYM_SECRET in .env}", "${PSEUDONYM_SECRET:-changeme}") + "x: ${NOT_IN_ENV}\n"
    assert checks.check_variable_defaults(broken, setting_defaults, compose_defaults, SECRET_NAMES) == [
        "${K_ANONYMITY:-3}: the default must be '5' as in .env.example",
        "${PSEUDONYM_SECRET:-changeme}: the default must be '' as in .env.example",
        "secret PSEUDONYM_SECRET must not have a default",
        "${NOT_IN_ENV} is neither a setting nor a compose variable (missing in .env.example)",
    ]


def test_compose_variables_are_not_settings() -> None:
    assert not {v.env for v in COMPOSE_VARIABLES} & set(setting_names())


def test_hardening(tmp_path: Path) -> None:
    assert checks.check_hardening(resolved(tmp_path), SECRET_VALUES) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace("web.submit.enable: false", "web.submit.enable: true"),
         "jobmanager: FLINK_PROPERTIES must set `web.submit.enable: false` (no jar upload in the UI)"),
        (lambda t: t.replace("  JOB_MANAGER_RPC_ADDRESS: jobmanager\n",
                             "  JOB_MANAGER_RPC_ADDRESS: jobmanager\n  SECRET: ${PSEUDONYM_SECRET:?x}\n"),
         "secret PSEUDONYM_SECRET reaches service jobmanager (SECRET)"),
        (lambda t: t.replace("    web.cancel.enable: true\n",
                             "    web.cancel.enable: true\n    s: ${INFLUX_TOKEN:?x}\n"),
         "secret INFLUX_TOKEN is in the Flink configuration of service jobmanager"),
        (lambda t: t.replace('"${PUBLISH_ADDRESS:-127.0.0.1}:3000:3000"', '"3000:3000"'),
         "service grafana: port 3000 is published on all interfaces (use PUBLISH_ADDRESS)"),
        (lambda t: t.replace("    image: influxdb:2.7.12\n",
                             '    image: influxdb:2.7.12\n    ports: ["127.0.0.1:8086:8086"]\n'),
         "service influxdb: port 8086 is published; only [('grafana', 3000), ('jobmanager', 8081), ('kafka', 9094)] "
         "may be"),
        (lambda t: t.replace("    command: taskmanager\n", "    command: taskmanager\n    container_name: tm\n"),
         "taskmanager cannot be scaled: no container_name, hostname or ports allowed"),
        (lambda t: t.replace("    command: taskmanager\n", "    command: taskmanager\n    user: root\n"),
         "service taskmanager runs as root"),
        (lambda t: t.replace("      kafka-acls:\n        condition: service_completed_successfully\n"
                             "    restart: \"no\"\n\n  grafana:",
                             "      - kafka-acls\n    restart: \"no\"\n\n  grafana:"),
         "service simulator: depends_on kafka-acls only waits for service_started"),
        (lambda t: t.replace('      test: ["CMD", "influx", "ping"]\n      interval: 10s\n      timeout: 5s\n',
                             "      disable: true\n").replace("      disable: true\n      retries: 12\n"
                                                            "      start_period: 20s\n", "      disable: true\n"),
         "service influxdb-tokens waits for influxdb to be healthy, which has no healthcheck"),
        (lambda t: t.replace("    volumes:\n      - flink-checkpoints:/flink-checkpoints\n"
                             "    depends_on:\n      jobmanager:", "    depends_on:\n      jobmanager:", 1),
         "service taskmanager: no named volume at CHECKPOINT_DIR /flink-checkpoints"),
    ],
    ids=["web-submit", "secret-env", "secret-flink-conf", "all-interfaces", "extra-port", "container-name",
         "root", "no-condition", "no-healthcheck", "checkpoint-volume"],
)
def test_hardening_check_fails_on_a_broken_copy(tmp_path: Path, edit: Callable[[str], str], expected: str) -> None:
    assert expected in checks.check_hardening(resolved(tmp_path, edit), SECRET_VALUES)


def test_topics_match_the_job(tmp_path: Path) -> None:
    assert checks.check_topics(resolved(tmp_path), DEFAULT_TOPICS, DEFAULT_TOPIC_CONFIG) == []
    broken = resolved(tmp_path, lambda t: t.replace("ecg-raw}:4", "ecg-raw}:2")
                      .replace("max.message.bytes=16777216", "max.message.bytes=1048588"))
    assert checks.check_topics(broken, DEFAULT_TOPICS, DEFAULT_TOPIC_CONFIG) == [
        "kafka-init: topic ecg-raw with 2 partitions, the job needs 4",
        "kafka-init: topic configuration {'max.message.bytes': '1048588'}, the job needs "
        "{'max.message.bytes': '16777216'}",
    ]


# ---- Dockerfile ----------------------------------------------------------------------------------------------


def dockerfile_problems(text: str) -> list[str]:
    return checks.check_dockerfile(
        text,
        requirements_text=(PROJECT_ROOT / "requirements.txt").read_text(),
        requires_python=tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["requires-python"],
        jars=[checks.JarPin(spec.name, spec.artifact, spec.sha256) for spec in CONNECTOR_JARS],
        secret_names=SECRET_NAMES,
    )


def test_local_broker_is_the_compose_files_kafka() -> None:
    """Tests and run-local.sh run the Apache Kafka version that docker-compose.yml deploys."""
    import re

    images = set(re.findall(r"image:\s*apache/kafka:(\S+)", COMPOSE_FILE.read_text()))
    pom = (PROJECT_ROOT / "devstack" / "kafka" / "pom.xml").read_text()
    assert images == {KAFKA_VERSION}
    assert re.findall(r"<kafka\.version>([^<]+)</", pom) == [KAFKA_VERSION]


def test_dockerfile_pins_match_requirements_and_jars() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("ARG FLINK_VERSION=2.0.2", "ARG FLINK_VERSION=2.0.1",
         "Dockerfile FLINK_VERSION=2.0.1, requirements.txt apache-flink==2.0.2"),
        ("ARG PYTHON_VERSION=3.11", "ARG PYTHON_VERSION=3.12",
         "Dockerfile PYTHON_VERSION=3.12, pyproject.toml requires-python >=3.11,<3.12"),
        ("ARG KAFKA_CLIENTS_ARTIFACT=org.apache.kafka:kafka-clients:3.9.1",
         "ARG KAFKA_CLIENTS_ARTIFACT=org.apache.kafka:kafka-clients:3.9.0",
         "Dockerfile KAFKA_CLIENTS_ARTIFACT=org.apache.kafka:kafka-clients:3.9.0, connectors/jars.py "
         "org.apache.kafka:kafka-clients:3.9.1"),
        ("KAFKA_CLIENTS_SHA256=7568", "KAFKA_CLIENTS_SHA256=0568",
         "Dockerfile KAFKA_CLIENTS_SHA256=0568b998572d256f0b7bc0afdc1b7a2588b8b08415c62ce314c864a6851ae9d9, "
         "connectors/jars.py 7568b998572d256f0b7bc0afdc1b7a2588b8b08415c62ce314c864a6851ae9d9"),
        ('"${KAFKA_CLIENTS_SHA256}" kafka-clients.jar', '"${KAFKA_CLIENTS_SHA2}" kafka-clients.jar',
         "Dockerfile never checks KAFKA_CLIENTS_SHA256"),
        ("USER flink\n", "", "Dockerfile: the final stage must switch to a non-root USER"),
        ("COPY privacy /opt/ecg/privacy", "COPY . /opt/ecg",
         "Dockerfile copies the whole context or .env (explicit COPYs only; secrets stay in .env)"),
        ("    PYTHONDONTWRITEBYTECODE=1", "    PYTHONDONTWRITEBYTECODE=1 \\\n    PSEUDONYM_SECRET=x",
         "Dockerfile mentions secret PSEUDONYM_SECRET"),
        ("-r /tmp/requirements.txt;", "-r /tmp/requirements.txt numpy==2.2.0;",
         "Dockerfile pins numpy==2.2.0, requirements.txt 2.1.3"),
    ],
    ids=["flink", "python", "artifact", "jar-sha", "sha-unchecked", "root", "copy-all", "secret", "pin"],
)
def test_dockerfile_check_fails_on_a_broken_copy(tmp_path: Path, old: str, new: str, expected: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace(old, new))
    assert expected in dockerfile_problems(broken.read_text())


def image_code_problems(text: str) -> list[str]:
    """The runtime stage holds the job's import closure and docker/; the simulator stage what it imports."""
    return [*checks.check_image_code(text, "runtime", image_packages(), scripts=["docker"]),
            *checks.check_image_code(text, "simulator", job_packages(["devstack.simulator"]))]


def test_the_image_holds_exactly_the_code_it_runs() -> None:
    assert image_code_problems(DOCKERFILE.read_text()) == []
    assert "devstack" not in image_packages() and "devstack" not in job_packages()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("COPY cardio /opt/ecg/cardio\n", "",
         "Dockerfile stage runtime: does not copy cardio into /opt/ecg, which it needs"),
        ("COPY docker /opt/ecg/docker\n", "COPY docker /opt/ecg/docker\nCOPY devstack /opt/ecg/devstack\n",
         "Dockerfile stage runtime: copies devstack into /opt/ecg, which it does not need"),
        ("COPY privacy /opt/ecg/privacy", "COPY privacy /opt/ecg/core",
         "Dockerfile stage runtime: COPY privacy /opt/ecg/core: a folder goes to /opt/ecg/privacy, under its own name"),
        ("COPY devstack /opt/ecg/devstack\n", "",
         "Dockerfile stage simulator: does not copy devstack into /opt/ecg, which it needs"),
    ],
    ids=["missing", "dev-code", "renamed", "simulator"],
)
def test_image_code_check_fails_on_a_broken_copy(old: str, new: str, expected: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text
    assert expected in image_code_problems(text.replace(old, new, 1))


def test_dockerignore_keeps_env_out_of_images() -> None:
    assert checks.check_dockerignore((PROJECT_ROOT / ".dockerignore").read_text()) == []
    assert checks.check_dockerignore(".git\n.venv\n") == [".dockerignore must exclude .env from every build context"]


# ---- Grafana -----------------------------------------------------------------------------------------------


def provisioned_datasource_uid() -> str:
    import yaml

    (datasource,) = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    return str(datasource["uid"])


def test_dashboard_queries_are_raw_influxql_on_the_provisioned_datasource() -> None:
    dashboard = checks.load_dashboard(DASHBOARD)
    assert checks.check_dashboard(dashboard, provisioned_datasource_uid(), checks.BRANCH_MEASUREMENTS) == []
    queries = checks.dashboard_queries(dashboard)
    assert {q.measurement for q in queries} == {"ecg_anonymized", "ecg_window_stats", "ecg_dead_letters"}
    broken = checks.load_dashboard(DASHBOARD)
    broken["panels"][1]["targets"][0]["datasource"]["uid"] = "other"
    broken["panels"][2]["targets"][0]["query"] = 'SELECT count("ecg_mv") FROM "ecg_anonymized"'
    assert checks.check_dashboard(broken, provisioned_datasource_uid()) == [
        f"panel {broken['panels'][1]['title']!r}: datasource 'other', provisioned 'ecg-influxdb'",
        f"panel {broken['panels'][2]['title']!r}: query without $timeFilter",
    ]


def test_the_provisioned_dashboard_reads_only_what_grafanas_token_may() -> None:
    """Grafana's token reads INFLUX_BUCKET only (check_influx_tokens); the per-patient statistics are in the branch
    bucket and on the optional dashboard, not provisioned, with a datasource of its own."""
    from operators.anomaly_models import ANOMALY_MEASUREMENT, MODEL_MEASUREMENT

    assert {ANOMALY_MEASUREMENT, MODEL_MEASUREMENT} == checks.BRANCH_MEASUREMENTS
    optional = checks.load_dashboard(OPTIONAL_DASHBOARD)
    assert not OPTIONAL_DASHBOARD.is_relative_to(DASHBOARD.parent), "it must not be provisioned"
    assert checks.check_dashboard(optional, "ecg-influxdb-branch") == []
    assert {q.measurement for q in checks.dashboard_queries(optional)} == checks.BRANCH_MEASUREMENTS
    assert provisioned_datasource_uid() != "ecg-influxdb-branch"
    # Control: the branch's panel on the provisioned dashboard is reported.
    broken = checks.load_dashboard(DASHBOARD)
    panel = json.loads(json.dumps(optional["panels"][1]))
    panel["targets"][0]["datasource"]["uid"] = provisioned_datasource_uid()
    broken["panels"].append(panel)
    assert checks.check_dashboard(broken, provisioned_datasource_uid(), checks.BRANCH_MEASUREMENTS) == [
        f"panel {panel['title']!r} reads ecg_anomaly_stats, which its datasource cannot read"]


def test_render_query_expands_grafana_macros() -> None:
    query = 'SELECT mean("ecg_mv") FROM "m" WHERE "pid" =~ /^$pid$/ AND $timeFilter GROUP BY time($__interval)'
    assert checks.render_query(query, start_ms=1000, end_ms=2000, interval="5s", variables={"pid": "ab12"}) == (
        'SELECT mean("ecg_mv") FROM "m" WHERE "pid" =~ /^ab12$/ AND time >= 1000ms and time <= 2000ms '
        "GROUP BY time(5s)")


# ---- Markdown ----------------------------------------------------------------------------------------------


def tracked_markdown() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    return [PROJECT_ROOT / line for line in listed.stdout.splitlines() if line]


def test_relative_markdown_links_resolve_inside_the_repository() -> None:
    files = tracked_markdown()
    assert PROJECT_ROOT / "README.md" in files
    assert checks.check_markdown_links(PROJECT_ROOT, files) == []


def test_markdown_link_check_fails_on_a_broken_copy(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "contract.md").write_text("# contract\n")
    readme = repo / "README.md"
    readme.write_text("[ok](docs/contract.md#outputs) [web](https://flink.apache.org) [here](#top)\n"
                      "[shared](../shared/contract.md) [gone](docs/missing.md)\n"
                      "`[code](nowhere.md)`\n```\n[block](nowhere.md)\n```\n[ref]: docs/also-missing.md\n")
    assert checks.check_markdown_links(repo, [readme]) == [
        "README.md: ../shared/contract.md points outside the repository",
        "README.md: docs/missing.md does not exist",
        "README.md: docs/also-missing.md does not exist",
    ]


# ---- Kafka: SASL_SSL everywhere, ACLs, each client its own principal (issue 20 item 6, issue 22 item 3) --------

BROKER_SCRIPT = PROJECT_ROOT / "docker" / "kafka" / "start-broker.sh"


def test_kafka_is_secured(tmp_path: Path) -> None:
    assert checks.check_kafka_security(resolved(tmp_path), BROKER_SCRIPT.read_text()) == []


@pytest.mark.parametrize(
    ("edit_compose", "edit_script", "expected"),
    [
        (None, lambda t: t.replace("EXTERNAL:SASL_SSL", "EXTERNAL:PLAINTEXT"),
         "kafka: listener EXTERNAL is PLAINTEXT, not SASL_SSL"),
        (None, lambda t: t.replace("allow.everyone.if.no.acl.found=false", "allow.everyone.if.no.acl.found=true"),
         "kafka: allow.everyone.if.no.acl.found must be false"),
        (None, lambda t: t.replace("super.users=User:admin", "super.users=User:admin;User:ANONYMOUS"),
         "kafka: super.users is 'User:admin;User:ANONYMOUS', must be User:admin alone"),
        (None, lambda t: t.replace("CONTROLLER://127.0.0.1:", "CONTROLLER://:"),
         "kafka: the controller listener must be bound to 127.0.0.1 inside the container"),
        (lambda t: t.replace("  KAFKA_SASL_USERNAME: ecg-job\n", "  KAFKA_SASL_USERNAME: admin\n"), None,
         "service submitter: Kafka user 'admin', expected ecg-job"),
        (lambda t: t.replace("  KAFKA_SECURITY_PROTOCOL: SASL_SSL\n  KAFKA_SASL_MECHANISM: SCRAM-SHA-512\n"
                             "  KAFKA_SASL_USERNAME: ecg-job", "  KAFKA_SECURITY_PROTOCOL: PLAINTEXT\n"
                             "  KAFKA_SASL_MECHANISM: SCRAM-SHA-512\n  KAFKA_SASL_USERNAME: ecg-job"), None,
         "service submitter: KAFKA_SECURITY_PROTOCOL is not SASL_SSL"),
        (lambda t: t.replace("      kafka-acls:\n        condition: service_completed_successfully\n      "
                             "influxdb-tokens:", "      kafka-init:\n        condition: "
                             "service_completed_successfully\n      influxdb-tokens:"),
         None, "service submitter does not wait for kafka-acls"),
        (lambda t: t.replace(', "--replay-user", "ecg-replay"]', "]"), None,
         "service kafka-acls does not grant ecg-replay (--replay-user ecg-replay)"),
    ],
)
def test_kafka_security_check_fails(tmp_path: Path, edit_compose: Callable[[str], str] | None,
                                    edit_script: Callable[[str], str] | None, expected: str) -> None:
    script = BROKER_SCRIPT.read_text()
    if edit_script is not None:
        changed = edit_script(script)
        assert changed != script
        script = changed
    assert expected in checks.check_kafka_security(resolved(tmp_path, edit_compose), script)


# ---- InfluxDB: a write-only token for the job, a read-only one for Grafana (issue 22 item 3) ------------------

TOKENS_SCRIPT = PROJECT_ROOT / "docker" / "influxdb" / "create-tokens.sh"


def influx_token_problems(tmp_path: Path, edit_compose: Callable[[str], str] | None = None,
                          edit_script: Callable[[str], str] | None = None,
                          edit_datasource: Callable[[str], str] | None = None) -> list[str]:
    import yaml

    texts = []
    for path, edit in ((TOKENS_SCRIPT, edit_script), (DATASOURCE, edit_datasource)):
        text = path.read_text()
        if edit is not None:
            changed = edit(text)
            assert changed != text, "the edit did not change the file"
            text = changed
        texts.append(text)
    return checks.check_influx_tokens(resolved(tmp_path, edit_compose), texts[0], yaml.safe_load(texts[1]))


def test_influx_tokens_least_privilege(tmp_path: Path) -> None:
    assert influx_token_problems(tmp_path) == []


@pytest.mark.parametrize(
    ("edit_compose", "edit_script", "edit_datasource", "expected"),
    [
        (lambda t: t.replace("  INFLUX_TOKEN_FILE: /run/ecg-influx/job.token\n",
                             "  INFLUX_TOKEN: ${INFLUXDB_ADMIN_TOKEN:?x}\n"), None, None,
         "the job gets INFLUX_TOKEN (the admin token?): it must read its own from INFLUX_TOKEN_FILE"),
        (lambda t: t.replace("  INFLUX_BRANCH_BUCKET: ${INFLUX_BUCKET:-ecg}-branch\n",
                             "  INFLUX_BRANCH_BUCKET: ${INFLUX_BUCKET:-ecg}\n"), None, None,
         "the job must write the branch's per-patient statistics to INFLUX_BRANCH_BUCKET, a bucket other than "
         "INFLUX_BUCKET"),
        (lambda t: t.replace("      - influx-job-token:/run/ecg-influx:ro\n",
                             "      - influx-job-token:/run/ecg-influx\n"),
         None, None, "the job's INFLUX_TOKEN_FILE '/run/ecg-influx/job.token' is not on a read-only named volume"),
        (lambda t: t.replace("      - influx-grafana-token:/run/ecg-influx:ro\n",
                             "      - influx-job-token:/run/ecg-influx:ro\n"), None, None,
         "service grafana mounts the job's token volume influx-job-token"),
        (None, lambda t: t.replace('--write-bucket "${branch_id}"\n', '--write-bucket "${branch_id}" --read-bucket '
                                   '"${main_id}"\n'), None,
         "create-tokens.sh: the job's token has ['--write-bucket', '${main_id}', '--write-bucket', '${branch_id}', "
         "'--read-bucket', '${main_id}'], must be exactly ['--write-bucket', '${main_id}', '--write-bucket', "
         "'${branch_id}']"),
        (None, lambda t: t.replace('ecg-grafana --read-bucket "${main_id}"',
                                   'ecg-grafana --read-bucket "${main_id}" --read-bucket "${branch_id}"'), None,
         "create-tokens.sh: Grafana's token has ['--read-bucket', '${main_id}', '--read-bucket', '${branch_id}'], "
         "must be exactly ['--read-bucket', '${main_id}']"),
        (None, lambda t: t.replace('"${description}" "$@"', '"${description}" --all-access "$@"'), None,
         "create-tokens.sh: `influx auth create` must appear once, with only the permissions of `token` (\"$@\")"),
        (None, None, lambda t: t.replace("httpHeaderValue1: Token $__file{/run/ecg-influx/grafana.token}",
                                         "httpHeaderValue1: Token $__file{/run/ecg-influx/job.token}"),
         "Grafana's datasource token is not the GRAFANA_TOKEN_FILE influxdb-tokens writes (read-only)"),
        (None, None, lambda t: t.replace("      httpHeaderName1: Authorization\n", ""),
         "Grafana's datasource does not authenticate with `Authorization: Token $__file{...}`"),
        (lambda t: t.replace("      influxdb-tokens:\n        condition: service_completed_successfully\n"
                             "    healthcheck:", "      influxdb:\n        condition: service_healthy\n"
                             "    healthcheck:"), None, None,
         "service grafana does not wait for influxdb-tokens"),
    ],
    ids=["admin-token", "same-bucket", "writable-token-volume", "grafana-job-volume", "job-reads",
         "grafana-reads-branch", "all-access", "grafana-job-token", "no-header", "grafana-order"],
)
def test_influx_token_check_fails(tmp_path: Path, edit_compose: Callable[[str], str] | None,
                                  edit_script: Callable[[str], str] | None,
                                  edit_datasource: Callable[[str], str] | None, expected: str) -> None:
    assert expected in influx_token_problems(tmp_path, edit_compose, edit_script, edit_datasource)
