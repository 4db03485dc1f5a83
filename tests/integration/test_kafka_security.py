"""Secured Kafka on the real broker (issue 20 item 5, issue 22 items 3-4).

One Apache Kafka broker (devstack.stack) whose only client listener is SASL_SSL: TLS with a CA this
test makes (devstack.secure_kafka.make_pki), SCRAM-SHA-512 users created when its log directory is
formatted, StandardAuthorizer with the project's ACL set (connectors.kafka_acls, as the compose init applies
it). Shown here:

- ACLs: a device may write the input topic but is refused reading it or the dead-letter topic; an analyst
  reads the anonymized topics and neither of those. The replay principal (python -m replay, through its own
  Kafka functions) reads the letters and the input by position, creates, copies into, reads back and deletes
  its own topics with its own consumer groups, and is refused writing the input or the DLQ, reading the
  anonymized topics and the job's group. The replay tool's topics (raw repaired input: corrections log,
  staging) are refused to the job, devices and analysts alike.
- The simulator (as a device, settings from its environment) and the job (as the job principal, settings
  from the environment, its password from a *_FILE) work only through that listener: the job's points and
  dead letters are exactly the reference model's, and the password is in no log.
- A wrong password, a certificate from an unknown CA, or a principal without ACLs fail the job at start
  with one clear line (exit 2), within seconds, not after the restart strategy's retries.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.config import PROJECT_ROOT
from connectors.kafka_acls import Topics, apply_grants, grants
from connectors.kafka_security import KafkaSecurity
from devstack.simulator import SimConfig, generate_messages
from testkit.jobs import TEST_SECRET
from testkit.reference import expected_output

START_MS = 1_763_812_800_000
K = 3
GROUP = "ecg-secure"
TOPICS = Topics("ecg-raw", "ecg-dlq", "ecg-anomalies", "ecg-model-updates")
JOB, DEVICE, READER, REPLAY = "ecg-job", "ecg-device", "ecg-reader", "ecg-replay"
REPLAY_TOPICS = (f"{TOPICS.input}.replay-corrections", f"{TOPICS.input}.replay-0123abcd")  # python -m replay


@pytest.fixture(scope="module")
def secure_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Kafka with a SASL_SSL listener only, ACLs applied; influxd 1.x for the job's points."""
    from tests.conftest import require_stack_binaries

    require_stack_binaries()
    from devstack.influx_queries import create_database_v1
    from devstack.secure_kafka import BrokerSecurity, make_pki
    from devstack.stack import LocalStack

    root = tmp_path_factory.mktemp("secure-kafka")
    security = BrokerSecurity(make_pki(root / "pki"),
                              users={user: secrets.token_urlsafe(18) for user in (JOB, DEVICE, READER, REPLAY)})
    topics = {TOPICS.input: 4, TOPICS.dlq: 1, TOPICS.anomalies: 1, TOPICS.models: 1,
              **dict.fromkeys(REPLAY_TOPICS, 1)}
    stack = LocalStack(root / "stack", kafka_security=security, topics=topics)
    stack.start(victoria_metrics=False)
    try:
        create_database_v1(stack.influx_v1_url, "ecg")
        apply_grants(stack.kafka_bootstrap, security.admin,
                     grants(TOPICS, GROUP, job=JOB, devices=DEVICE, readers=READER, replay=REPLAY))
        yield stack
    finally:
        stack.stop()


def _environment(security: KafkaSecurity, tmp_path: Path, *, password_file: bool = False) -> dict[str, str]:
    """The process environment of a client with these settings (nothing from the developer's .env)."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("KAFKA_")}
    environment.update({
        "KAFKA_SECURITY_PROTOCOL": security.security_protocol,
        "KAFKA_SASL_MECHANISM": security.sasl_mechanism,
        "KAFKA_SASL_USERNAME": security.sasl_username,
        "KAFKA_SSL_CA_FILE": security.ssl_ca_file,
        "PSEUDONYM_SECRET": TEST_SECRET,
    })
    if password_file:
        secret = tmp_path / "kafka-password"
        secret.write_text(security.sasl_password + "\n")
        environment["KAFKA_SASL_PASSWORD_FILE"] = str(secret)
    else:
        environment["KAFKA_SASL_PASSWORD"] = security.sasl_password
    return environment


def _consume(stack: Any, security: KafkaSecurity, topic: str, group: str | None = None) -> list[Any]:
    """Every record of ``topic`` read as ``security``'s principal; TopicAuthorizationFailedError when the broker
    refuses (a fetch without READ, or metadata without DESCRIBE: kafka-python then only logs it and knows no
    partition, so the refusal is taken from its metadata)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import TopicAuthorizationFailedError

    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False, group_id=group,
                             consumer_timeout_ms=1000, **security.kafka_python_config())
    try:
        # Without DESCRIBE the topic is missing from the metadata: assign partition 0, the fetch then asks for it.
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        idle_deadline = time.monotonic() + 3
        while time.monotonic() < idle_deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
                idle_deadline = time.monotonic() + 1.5
            if topic in consumer._client.cluster.unauthorized_topics:
                raise TopicAuthorizationFailedError(f"{topic}: DESCRIBE denied")
        return records
    finally:
        consumer.close()


def test_acls_device_writes_input_only(secure_stack: Any) -> None:
    from kafka import KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError

    security = secure_stack.kafka_security
    device = security.client(DEVICE)
    producer = KafkaProducer(bootstrap_servers=secure_stack.kafka_bootstrap, **device.kafka_python_config())
    try:
        producer.send(TOPICS.input, b"acl-probe", partition=3).get(timeout=30)
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(TOPICS.dlq, b"acl-probe").get(timeout=30)
    finally:
        producer.close(timeout=5)
    for topic in (TOPICS.input, TOPICS.dlq):
        with pytest.raises(TopicAuthorizationFailedError):
            _consume(secure_stack, device, topic)
    reader = security.client(READER)
    for topic in (TOPICS.input, TOPICS.dlq):
        with pytest.raises(TopicAuthorizationFailedError):
            _consume(secure_stack, reader, topic)
    assert _consume(secure_stack, reader, TOPICS.models) == []  # granted (nothing written yet)
    assert _consume(secure_stack, reader, TOPICS.anomalies) == []
    # The probe record is there: the admin reads it.
    assert [r.value for r in _consume(secure_stack, security.admin, TOPICS.input) if r.partition == 3] == [b"acl-probe"]


def test_acls_only_the_replay_principal_reads_the_replay_topics(secure_stack: Any) -> None:
    from kafka import KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError

    security = secure_stack.kafka_security
    admin = KafkaProducer(bootstrap_servers=secure_stack.kafka_bootstrap, **security.admin.kafka_python_config())
    try:
        for topic in REPLAY_TOPICS:
            admin.send(topic, b'{"patient_id": "raw-probe"}').get(timeout=30)
    finally:
        admin.close(timeout=5)
    for topic in REPLAY_TOPICS:
        for user in (JOB, DEVICE, READER):
            with pytest.raises(TopicAuthorizationFailedError):
                _consume(secure_stack, security.client(user), topic)
        for client in (security.client(REPLAY), security.admin):
            assert [r.value for r in _consume(secure_stack, client, topic)] == [b'{"patient_id": "raw-probe"}']


def test_acls_replay_reads_letters_and_originals_and_owns_only_its_topics(secure_stack: Any) -> None:
    """What python -m replay does on Kafka (replay.kafka_io, as the replay principal): read the DLQ, read an
    original by its position, create a staging topic, copy the input into it with a correction in place, read it
    back with a rebuild's consumer group, delete it. And what it may not do. Own input and DLQ topics (with the
    same ACL set), so the job tests of this module see none of these records."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError
    from kafka.structs import OffsetAndMetadata

    from replay import kafka_io

    bootstrap = secure_stack.kafka_bootstrap
    security = secure_stack.kafka_security
    replay = security.client(REPLAY)
    run = secrets.token_hex(4)
    topics = Topics(f"ecg-raw.acl-{run}", f"ecg-dlq.acl-{run}", TOPICS.anomalies, TOPICS.models)
    secure_stack.create_topics({topics.input: 2, topics.dlq: 1})
    apply_grants(bootstrap, security.admin, grants(topics, GROUP, job="", devices="", replay=REPLAY))
    # An original in the input and its letter in the DLQ, as a device and the job leave them.
    admin = KafkaProducer(bootstrap_servers=bootstrap, **security.admin.kafka_python_config())
    try:
        original = admin.send(topics.input, f"replay-original-{run}".encode(), partition=1).get(timeout=30)
        admin.send(topics.dlq, json.dumps({"topic": topics.input, "partition": 1, "offset": original.offset,
                                           "run": run}).encode()).get(timeout=30)
    finally:
        admin.close(timeout=5)

    letters = kafka_io.read_topic(bootstrap, topics.dlq, security=replay)
    assert any(json.loads(r.value).get("run") == run for batch in letters.records.values() for r in batch)
    found = kafka_io.read_positions(bootstrap, topics.input, [(1, original.offset)], replay)
    assert found[(1, original.offset)].value == f"replay-original-{run}".encode()

    staging = f"{topics.input}.replay-{run}"
    kafka_io.ensure_topic(bootstrap, staging, 4, {"max.message.bytes": str(kafka_io.MAX_MESSAGE_BYTES)}, replay)
    copy = kafka_io.copy_with_corrections(bootstrap, topics.input, staging, {(1, original.offset): b"fixed"}, replay)
    assert copy.replaced == {(1, original.offset)}
    assert b"fixed" in [r.value for r in _consume(secure_stack, replay, staging)]
    kafka_io.delete_topics(bootstrap, [staging], replay)

    # Refused: writing the input or the DLQ, reading the anonymized topics, the live job's consumer group, a
    # topic outside its prefix.
    producer = KafkaProducer(bootstrap_servers=bootstrap, **replay.kafka_python_config())
    try:
        for topic in (topics.input, topics.dlq):
            with pytest.raises(TopicAuthorizationFailedError):
                producer.send(topic, b"replay-probe").get(timeout=30)
    finally:
        producer.close(timeout=5)
    for topic in (TOPICS.anomalies, TOPICS.models):
        with pytest.raises(TopicAuthorizationFailedError):
            _consume(secure_stack, replay, topic)

    def commit(group: str) -> None:
        """Commit an offset of the input as ``group`` (what the rebuild's Kafka source does at checkpoints)."""
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                 **replay.kafka_python_config())
        try:
            partition = TopicPartition(topics.input, 1)
            consumer.assign([partition])
            consumer.commit({partition: OffsetAndMetadata(0, "", -1)})
        finally:
            consumer.close()

    commit(f"{GROUP}-replay-{run}")
    with pytest.raises(GroupAuthorizationFailedError):
        commit(GROUP)
    with pytest.raises(TopicAuthorizationFailedError):
        kafka_io.ensure_topic(bootstrap, f"not-replay-{run}", 1, {}, replay)


def _job_argv(stack: Any, tmp_path: Path, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "flink_jobs.ecg_anonymization_job", "--env-file", os.devnull,
        "--kafka-bootstrap", stack.kafka_bootstrap, "--kafka-group-id", GROUP,
        "--kafka-input-topic", TOPICS.input, "--kafka-dlq-topic", TOPICS.dlq,
        "--influx-transport", "v1", "--influx-url", stack.influx_v1_url, "--influx-db", "ecg",
        "--checkpoint-dir", str(tmp_path / "checkpoints"), "--checkpoint-interval-seconds", "2",
        "--restart-attempts", "1", "--cardio-branch", "false", *args,
    ]


def _job(stack: Any, environment: dict[str, str], tmp_path: Path, *args: str,
         timeout: float) -> subprocess.CompletedProcess[str]:
    environment = {**environment, "FLINK_LOG_DIR": str(tmp_path / "flink-log")}
    return subprocess.run(_job_argv(stack, tmp_path, *args), cwd=PROJECT_ROOT, env=environment, capture_output=True,
                          text=True, timeout=timeout)


def test_job_reads_and_writes_only_through_the_secured_listener(secure_stack: Any, tmp_path: Path) -> None:
    from devstack.influx_queries import count_points_v1, query_v1

    security = secure_stack.kafka_security
    # The simulator as a device: its security settings from its environment, like the job's.
    sim_args = ["--patients", "8", "--duration", "20", "--sites", "2", "--seed", "5", "--start-ms", str(START_MS),
                "--bad-fraction", "0.05"]
    config = SimConfig(patients=8, duration_s=20, sites=2, seed=5, start_ms=START_MS, bad_fraction=0.05)
    messages = list(generate_messages(config))
    bad = [message for message in messages if message.kind == "bad"]
    assert len(bad) >= 4
    simulated = subprocess.run(
        [sys.executable, "-m", "devstack.simulator", "--bootstrap", secure_stack.kafka_bootstrap,
         "--topic", TOPICS.input, *sim_args],
        cwd=PROJECT_ROOT, env=_environment(security.client(DEVICE), tmp_path), capture_output=True, text=True,
        timeout=120,
    )
    assert simulated.returncode == 0, simulated.stdout + simulated.stderr
    assert f"{len(messages) - len(bad)} valid" in simulated.stdout, simulated.stdout

    # A one-time backfill (KAFKA_STOP_AT=latest): the job ends by itself when it has read the input.
    job_security = security.client(JOB)
    started = time.monotonic()
    result = _job(secure_stack, _environment(job_security, tmp_path, password_file=True), tmp_path,
                  "--kafka-stop-at", "latest", "--k-anonymity", str(K), timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    print(f"secured backfill job: {time.monotonic() - started:.0f} s")

    expected = expected_output(messages, k=K)
    assert count_points_v1(secure_stack.influx_v1_url, "ecg", "ecg_anonymized") == expected.points
    rows = query_v1(secure_stack.influx_v1_url, 'SELECT count("ecg_mv") FROM "ecg_anonymized" GROUP BY "level"', "ecg")
    assert Counter({int(row["level"]): int(row["count"]) for row in rows}) == expected.points_by_level

    # Dead letters through the secured listener: exactly the injected ones, and the ACL test's probe record
    # (not a frame) when that test ran first.
    probes = {(r.partition, r.offset) for r in _consume(secure_stack, security.admin, TOPICS.input)
              if r.value == b"acl-probe"}
    letters = [json.loads(record.value) for record in _consume(secure_stack, security.admin, TOPICS.dlq)]
    assert {letter["topic"] for letter in letters} == {TOPICS.input}
    assert {(letter["partition"], letter["offset"]) for letter in letters} >= probes
    injected = [letter for letter in letters if (letter["partition"], letter["offset"]) not in probes]
    assert len(letters) == len(bad) + len(probes)
    assert Counter(letter["reason"] for letter in injected) == Counter(message.expected_reason for message in bad)

    # The password reached no log: neither the job's output nor Flink's.
    logs = output + "".join(path.read_text(errors="replace") for path in (tmp_path / "flink-log").glob("*"))
    assert job_security.sasl_password not in logs
    assert "SASL_SSL" in output  # the settings line shows the protocol (and masks the password)


def test_job_fails_at_start_with_one_clear_line(secure_stack: Any, tmp_path: Path) -> None:
    """Three jobs at once (each its own JVM): wrong password, a CA that did not sign the broker's certificate, a
    principal without ACLs. Each exits 2 with one `kafka error:` line naming the cause, in seconds."""
    from devstack.secure_kafka import make_pki

    security = secure_stack.kafka_security
    other_ca = make_pki(tmp_path / "other-pki", name="unknown").ca_file
    cases = {
        "wrong password": (security.client(JOB, password="not-the-password"), "SASL login refused"),
        "untrusted certificate": (security.client(JOB, ca_file=other_ca), "TLS handshake failed"),
        "no ACL": (security.client(READER), f"access to topic '{TOPICS.input}' denied"),
    }
    started = time.monotonic()
    running = {}
    for number, (case, (client, _)) in enumerate(cases.items()):
        workdir = tmp_path / f"case-{number}"
        workdir.mkdir()
        environment = {**_environment(client, workdir), "FLINK_LOG_DIR": str(workdir / "flink-log")}
        running[case] = subprocess.Popen(_job_argv(secure_stack, workdir), cwd=PROJECT_ROOT, env=environment,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for case, process in running.items():
            client, expected = cases[case]
            stdout, stderr = process.communicate(timeout=max(1.0, 100 - (time.monotonic() - started)))
            seconds = time.monotonic() - started
            errors = [line for line in stderr.splitlines() if line.startswith("kafka error:")]
            assert process.returncode == 2, f"{case}: {stdout[-2000:]}{stderr[-2000:]}"
            assert len(errors) == 1 and expected in errors[0], f"{case}: {stderr[-2000:]}"
            assert "Traceback" not in stderr
            assert client.sasl_password not in stdout + stderr
            print(f"{case}: exit 2 after {seconds:.0f} s: {errors[0]}")
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.mark.slow
def test_cardio_job_through_the_secured_listener(secure_stack: Any, tmp_path: Path) -> None:
    """Both jobs (CARDIO_BRANCH=true: the cardio job in a child process) as the job principal: the anomalies and
    model updates (both written, the updates read back) are exactly the reference model's. Own topics, with the
    same ACL set."""
    from devstack.influx_queries import create_database_v1
    from devstack.simulator import Episode, make_producer, produce
    from testkit.jobs import JobProcess, wait_until
    from testkit.reference import expected_branch

    security = secure_stack.kafka_security
    topics = Topics("ecg-raw.cardio", "ecg-dlq.cardio", "ecg-anomalies.cardio", "ecg-model-updates.cardio")
    secure_stack.create_topics({topics.input: 4, topics.dlq: 1, topics.anomalies: 1, topics.models: 1})
    apply_grants(secure_stack.kafka_bootstrap, security.admin, grants(topics, GROUP, job=JOB, devices=DEVICE))
    create_database_v1(secure_stack.influx_v1_url, "ecg_cardio")

    config = SimConfig(patients=6, duration_s=100, start_ms=START_MS, sites=2, end_of_stream=True, partitions=4,
                       seed=21, synthetic=True, episodes=(Episode("dev-0003", "tachycardia", 40, 40),))
    messages = list(generate_messages(config))
    args = [*_job_argv(secure_stack, tmp_path)[3:], "--cardio-branch", "true", "--influx-db", "ecg_cardio",
            "--kafka-input-topic", topics.input, "--kafka-dlq-topic", topics.dlq,
            "--kafka-anomaly-topic", topics.anomalies, "--kafka-model-topic", topics.models,
            "--k-anonymity", "3", "--model-update-seconds", "30", "--model-grace-seconds", "5"]
    expected = expected_branch(messages, args)
    expected_anomalies = {e.event_id: json.loads(e.to_json()) for e in expected.anomalies}
    expected_updates = {u.update_id: json.loads(u.to_json())
                        for u in [*expected.local_updates, *expected.global_updates]}
    assert expected_anomalies and expected.global_updates
    producer = make_producer(secure_stack.kafka_bootstrap, security.client(DEVICE))
    try:
        assert produce(messages, secure_stack.kafka_bootstrap, topics.input, producer=producer).errors == 0
    finally:
        producer.close(timeout=10)

    reader = security.admin

    def read(topic: str) -> list[dict[str, Any]]:
        return [json.loads(record.value) for record in _consume(secure_stack, reader, topic)]

    job = JobProcess(args, tmp_path / "job.log", env=_environment(security.client(JOB), tmp_path, password_file=True))
    try:
        wait_until(lambda: len({a["event_id"] for a in read(topics.anomalies)}) >= len(expected_anomalies)
                   and len({u["update_id"] for u in read(topics.models)}) >= len(expected_updates),
                   180, "all anomalies and model updates", job=job, poll=3.0)
        time.sleep(4)
        anomalies, updates = read(topics.anomalies), read(topics.models)
    finally:
        job.stop()
    assert {a["event_id"]: a for a in anomalies} == expected_anomalies
    assert {u["update_id"]: u for u in updates} == expected_updates
    assert security.client(JOB).sasl_password not in job.log_text() + job.flink_log_text()


def test_compose_broker_script_and_init(tmp_path: Path) -> None:
    """docker-compose.yml's broker (docker/kafka/start-broker.sh, with the image's kafka-storage.sh and
    kafka-server-start.sh replaced by the same classes of the local broker's classpath) and its init
    (python -m connectors.kafka_acls as the kafka-acls service runs it): the init logs in as admin, creates the
    SCRAM users and ACLs; a device then writes the input topic through the external listener and may not read
    it. Certificates from `python -m devstack.secure_kafka`, as README says."""
    from tests.conftest import require_stack_binaries

    require_stack_binaries()  # in CI a missing broker fails the run, never skips it
    from kafka import KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError

    from devstack.kafka_admin import create_topics
    from devstack.processes import free_port
    from devstack.stack import KAFKA_JVM_OPTS, _java, kafka_classpath

    secrets_dir = tmp_path / "secrets"
    made = subprocess.run([sys.executable, "-m", "devstack.secure_kafka", "--out", str(secrets_dir), "--host",
                           "127.0.0.1"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = f'{_java()} {" ".join(KAFKA_JVM_OPTS)} -cp "{kafka_classpath()}"'
    for script, main_class in (("kafka-storage.sh", "kafka.tools.StorageTool"),
                               ("kafka-server-start.sh", "kafka.Kafka")):
        (bin_dir / script).write_text(f'#!/bin/bash\nexec {java} {main_class} "$@"\n')
        (bin_dir / script).chmod(0o755)
    internal, external, controller = free_port(), free_port(), free_port()
    admin_password, job_password, device_password = (secrets.token_urlsafe(12) for _ in range(3))
    environment = {
        "PATH": os.environ["PATH"], "KAFKA_BIN": str(bin_dir), "DATA_DIR": str(tmp_path / "data"),
        "SECRETS": str(secrets_dir), "INTERNAL_HOST": "localhost", "INTERNAL_PORT": str(internal),
        "LISTEN_EXTERNAL_PORT": str(external), "CONTROLLER_PORT": str(controller), "EXTERNAL_HOST": "127.0.0.1",
        "EXTERNAL_PORT": str(external), "ECG_KAFKA_ADMIN_PASSWORD": admin_password,
    }
    log = (tmp_path / "broker.log").open("wb")
    broker = subprocess.Popen(["bash", str(PROJECT_ROOT / "docker" / "kafka" / "start-broker.sh")], env=environment,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ca = str(secrets_dir / "ca.pem")
        admin = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "admin", admin_password, ca)
        deadline = time.monotonic() + 90
        while True:
            assert broker.poll() is None, (tmp_path / "broker.log").read_text()[-3000:]
            try:
                create_topics(f"localhost:{internal}", {TOPICS.input: 4, TOPICS.dlq: 1},
                              client_config=admin.kafka_python_config(), timeout=10)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        init_environment = {
            "PATH": os.environ["PATH"], "KAFKA_BOOTSTRAP": f"localhost:{internal}",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "admin", "KAFKA_SASL_PASSWORD": admin_password, "KAFKA_SSL_CA_FILE": ca,
            "KAFKA_ACL_JOB_PASSWORD": job_password, "KAFKA_ACL_DEVICE_PASSWORD": device_password,
        }
        init = subprocess.run([sys.executable, "-m", "connectors.kafka_acls", "--job-user", "ecg-job",
                               "--device-user", "ecg-device", "--reader-user", "ecg-reader"],
                              cwd=PROJECT_ROOT, env=init_environment, capture_output=True, text=True, timeout=60)
        assert init.returncode == 0, init.stdout + init.stderr
        assert "SCRAM-SHA-512 credentials set for ecg-device, ecg-job" in init.stdout
        assert admin_password not in init.stdout + init.stderr

        class Stack:  # what _consume needs
            kafka_bootstrap = f"127.0.0.1:{external}"

        device = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "ecg-device", device_password, ca)
        producer = KafkaProducer(bootstrap_servers=Stack.kafka_bootstrap, **device.kafka_python_config())
        try:
            producer.send(TOPICS.input, b"from a device", partition=0).get(timeout=30)
        finally:
            producer.close(timeout=5)
        with pytest.raises(TopicAuthorizationFailedError):
            _consume(Stack, device, TOPICS.input)
        job = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "ecg-job", job_password, ca)
        assert [r.value for r in _consume(Stack, job, TOPICS.input)] == [b"from a device"]
    finally:
        os.killpg(broker.pid, 9)
        broker.wait(timeout=30)
        log.close()
