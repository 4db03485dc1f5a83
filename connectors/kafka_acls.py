"""Least-privilege Kafka ACLs of the deployment (issue 22): who may read and write which topic.

One definition, used by the compose init (service ``kafka-acls``: ``python -m connectors.kafka_acls``) and by
the ACL test on the real broker (tests/integration/test_kafka_security.py). The broker runs ``StandardAuthorizer``
with ``allow.everyone.if.no.acl.found=false``: what is not granted here is refused.

=============  ==================================================================================
principal      may
=============  ==================================================================================
job            read the input topic; write the dead letters, anomalies and model updates; read the
               model updates back (cardio branch); consumer groups ``<KAFKA_GROUP_ID>*``;
               transactional ids ``ecg-*`` (KAFKA_DELIVERY=exactly-once)
devices        write the input topic, nothing else (no read, not even their own frames)
readers        dashboards / analysts: read the anonymized topics (anomalies, model updates); their
               consumer groups start with their user name
operators      (optional) read the dead-letter topic; consumer groups start with their user name
replay         ``python -m replay``: read the dead-letter and the input topic (letters, and their originals by
               position); create, read, write and delete its own topics ``<input>.replay-*`` (the corrections
               log, the staging copy and its dead letters); consumer groups ``<KAFKA_GROUP_ID>-replay-*`` (the
               rebuild's backfill job). Not the input topic: a replay never writes it (README, "Replaying dead
               letters"), nor the anonymized topics
=============  ==================================================================================

The admin principal (a super user of the broker) applies them; its connection settings are the job's own
(KAFKA_BOOTSTRAP, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*), the topic names and the group id too.
A user whose password is given (KAFKA_ACL_<ROLE>_PASSWORD, or its *_FILE) also gets its SCRAM-SHA-512
credential created or updated, so the compose init needs no other tool.

    python -m connectors.kafka_acls --job-user ecg-job --device-user ecg-device --reader-user ecg-reader \
        --replay-user ecg-replay
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.config import SETTINGS, ConfigError, read_secret_file
from connectors.kafka_security import KafkaSecurity

# Prefix of the transactional ids of the job's exactly-once sinks (connectors/kafka.build_string_sink callers).
TRANSACTIONAL_ID_PREFIX = "ecg-"


def replay_topic_prefix(input_topic: str) -> str:
    """Prefix of the replay tool's topics: ``<input>.replay-corrections``, ``<input>.replay-<run>`` and its ``.dlq``
    (replay/cli.py). They hold raw (repaired) input."""
    return f"{input_topic}.replay-"


def replay_group_prefix(group_id: str) -> str:
    """Prefix of the consumer groups of the replay's rebuild (replay.cli.job_command: ``<group>-replay-<run>``)."""
    return f"{group_id}-replay-"


@dataclass(frozen=True)
class Grant:
    """ALLOW ``operation`` on ``resource_type`` ``name`` (``pattern``: literal or prefixed) to ``User:<user>``."""

    user: str
    resource_type: str  # topic, group, transactional_id
    name: str
    operation: str  # read, write, describe
    pattern: str = "literal"


@dataclass(frozen=True)
class Topics:
    input: str = "ecg-raw"
    dlq: str = "ecg-dlq"
    anomalies: str = "ecg-anomalies"
    models: str = "ecg-model-updates"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Topics:
        defaults = {setting.env: setting.default or "" for setting in SETTINGS}
        get = lambda name: environ.get(name) or defaults[name]  # noqa: E731
        return cls(get("KAFKA_INPUT_TOPIC"), get("KAFKA_DLQ_TOPIC"), get("KAFKA_ANOMALY_TOPIC"),
                   get("KAFKA_MODEL_TOPIC"))


def grants(topics: Topics, group_id: str, *, job: str, devices: str, readers: str = "",
           operators: str = "", replay: str = "") -> list[Grant]:
    """The ACL set (see the module docstring); empty user names grant nothing."""
    out: list[Grant] = []
    if job:
        out += [Grant(job, "topic", topics.input, op) for op in ("read", "describe")]
        for topic in (topics.dlq, topics.anomalies, topics.models):
            out += [Grant(job, "topic", topic, op) for op in ("write", "describe")]
        out.append(Grant(job, "topic", topics.models, "read"))
        out.append(Grant(job, "group", group_id, "read", "prefixed"))
        out += [Grant(job, "transactional_id", TRANSACTIONAL_ID_PREFIX, op, "prefixed") for op in ("write", "describe")]
    if devices:
        out += [Grant(devices, "topic", topics.input, op) for op in ("write", "describe")]
    for user, readable in ((readers, (topics.anomalies, topics.models)), (operators, (topics.dlq,))):
        if user:
            for topic in readable:
                out += [Grant(user, "topic", topic, op) for op in ("read", "describe")]
            out.append(Grant(user, "group", user, "read", "prefixed"))
    if replay:
        for topic in (topics.input, topics.dlq):
            out += [Grant(replay, "topic", topic, op) for op in ("read", "describe")]
        out += [Grant(replay, "topic", replay_topic_prefix(topics.input), op, "prefixed")
                for op in ("create", "read", "write", "describe", "delete")]
        out.append(Grant(replay, "group", replay_group_prefix(group_id), "read", "prefixed"))
    return out


def _acl(grant: Grant) -> Any:
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

    pattern = ResourcePattern(ResourceType[grant.resource_type.upper()], grant.name,
                              ACLResourcePatternType[grant.pattern.upper()])
    return ACL(f"User:{grant.user}", "*", ACLOperation[grant.operation.upper()], ACLPermissionType.ALLOW, pattern)


def apply_grants(bootstrap: str, security: KafkaSecurity, wanted: Sequence[Grant], timeout_s: float = 30.0) -> int:
    """Create the ACLs (idempotent: the broker keeps one of each); returns how many were sent."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="ecg-acls",
                             request_timeout_ms=int(timeout_s * 1000), **security.kafka_python_config())
    try:
        result = admin.create_acls([_acl(grant) for grant in wanted])
        failed = result.get("failed") or []
        if failed:
            raise RuntimeError(f"{len(failed)} ACLs refused by the broker, e.g. {failed[0]!r}")
        _wait_until_visible(admin, wanted, timeout_s)
        return len(wanted)
    finally:
        admin.close()


def _acl_key(principal: str, operation: str, resource_type: str, name: str, pattern: str) -> tuple[str, ...]:
    return principal, operation.upper(), resource_type.upper(), name, pattern.upper()


def _wait_until_visible(admin: Any, wanted: Sequence[Grant], timeout_s: float) -> None:
    """Until the broker answering DescribeAcls lists every wanted ACL. A KRaft broker answers it from its own
    authorizer, which applies new ACLs from the metadata log a moment after CreateAcls returns: a client
    refused in that moment saw ClusterAuthorizationFailed on its first produce (1 run in 3 of the ACL test)."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    everything = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                           ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))
    missing = {_acl_key(f"User:{g.user}", g.operation, g.resource_type, g.name, g.pattern) for g in wanted}
    deadline = time.monotonic() + timeout_s
    while True:
        acls, _error = admin.describe_acls(everything)
        missing -= {_acl_key(acl.principal, acl.operation.name, acl.resource_pattern.resource_type.name,
                             acl.resource_pattern.resource_name, acl.resource_pattern.pattern_type.name)
                    for acl in acls}
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(missing)} ACLs not visible after {timeout_s:.0f} s, e.g. {sorted(missing)[0]}")
        time.sleep(0.2)


def upsert_scram_users(bootstrap: str, security: KafkaSecurity, passwords: Mapping[str, str],
                       timeout_s: float = 30.0) -> None:
    """Create or update the SCRAM-SHA-512 credential of each user (name -> password)."""
    from kafka import KafkaAdminClient
    from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

    if not passwords:
        return
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="ecg-acls",
                             request_timeout_ms=int(timeout_s * 1000), **security.kafka_python_config())
    try:
        result = admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion(user, ScramMechanism.SCRAM_SHA_512, password)
            for user, password in passwords.items()
        ])
        failed = {user: error for user, error in (result or {}).items() if error}
        if failed:
            raise RuntimeError(f"SCRAM credentials refused by the broker: {failed}")
    finally:
        admin.close()


def _password(environ: Mapping[str, str], name: str) -> str:
    if environ.get(name):
        return environ[name]
    if environ.get(name + "_FILE"):
        return read_secret_file(name + "_FILE", environ[name + "_FILE"])
    return ""


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m connectors.kafka_acls", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job-user", default=environ.get("KAFKA_ACL_JOB_USER", ""))
    parser.add_argument("--device-user", default=environ.get("KAFKA_ACL_DEVICE_USER", ""))
    parser.add_argument("--reader-user", default=environ.get("KAFKA_ACL_READER_USER", ""))
    parser.add_argument("--operator-user", default=environ.get("KAFKA_ACL_OPERATOR_USER", ""))
    parser.add_argument("--replay-user", default=environ.get("KAFKA_ACL_REPLAY_USER", ""))
    parser.add_argument("--bootstrap", default=environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--group-id", default=environ.get("KAFKA_GROUP_ID", "ecg-anonymizer"))
    parser.add_argument("--dry-run", action="store_true", help="print the ACLs, send nothing")
    args = parser.parse_args(argv)
    wanted = grants(Topics.from_environ(environ), args.group_id, job=args.job_user, devices=args.device_user,
                    readers=args.reader_user, operators=args.operator_user, replay=args.replay_user)
    for grant in wanted:
        print(f"ALLOW User:{grant.user} {grant.operation.upper()} {grant.resource_type} {grant.name} ({grant.pattern})")
    if args.dry_run:
        return 0
    try:
        security = KafkaSecurity.from_environ(environ)
        roles = {"JOB": args.job_user, "DEVICE": args.device_user, "READER": args.reader_user,
                 "OPERATOR": args.operator_user, "REPLAY": args.replay_user}
        passwords = {user: _password(environ, f"KAFKA_ACL_{role}_PASSWORD") for role, user in roles.items() if user}
        passwords = {user: password for user, password in passwords.items() if password}
        upsert_scram_users(args.bootstrap, security, passwords)
        if passwords:
            print(f"SCRAM-SHA-512 credentials set for {', '.join(sorted(passwords))}")
        count = apply_grants(args.bootstrap, security, wanted)
    except (ConfigError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{count} ACLs set on {args.bootstrap}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
