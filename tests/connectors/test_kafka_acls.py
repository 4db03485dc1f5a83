"""The deployment's ACL set (connectors/kafka_acls.py), as data: least privilege per principal. The broker
enforcing it is tests/integration/test_kafka_security.py."""

from __future__ import annotations

import pytest

from connectors.kafka_acls import TRANSACTIONAL_ID_PREFIX, Grant, Topics, grants, main

TOPICS = Topics()


def _allowed(wanted: list[Grant], user: str) -> set[tuple[str, str, str]]:
    return {(g.resource_type, g.name, g.operation) for g in wanted if g.user == user}


def test_each_principal_gets_only_its_own_access() -> None:
    wanted = grants(TOPICS, "ecg-anonymizer", job="job", devices="dev", readers="rd", operators="ops")
    assert _allowed(wanted, "dev") == {("topic", "ecg-raw", "write"), ("topic", "ecg-raw", "describe")}
    job = _allowed(wanted, "job")
    assert ("topic", "ecg-raw", "read") in job and ("topic", "ecg-raw", "write") not in job
    assert {("topic", t, "write") for t in ("ecg-dlq", "ecg-anomalies", "ecg-model-updates")} <= job
    assert ("topic", "ecg-dlq", "read") not in job
    assert ("transactional_id", TRANSACTIONAL_ID_PREFIX, "write") in job
    readable = {name for kind, name, op in _allowed(wanted, "rd") if kind == "topic" and op == "read"}
    assert readable == {"ecg-anomalies", "ecg-model-updates"}
    assert {name for kind, name, op in _allowed(wanted, "ops") if kind == "topic"} == {"ecg-dlq"}
    assert all(g.pattern == "literal" for g in wanted if g.resource_type == "topic")


def test_empty_users_get_nothing_and_dry_run_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert grants(TOPICS, "g", job="", devices="") == []
    assert main(["--device-user", "dev", "--dry-run"], environ={"KAFKA_INPUT_TOPIC": "raw"}) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["ALLOW User:dev WRITE topic raw (literal)",
                                "ALLOW User:dev DESCRIBE topic raw (literal)"]


def _covering(wanted: list[Grant], resource_type: str, name: str) -> set[tuple[str, str]]:
    """(user, operation) of the grants that apply to this resource (literal or prefixed)."""
    return {(g.user, g.operation) for g in wanted if g.resource_type == resource_type
            and (g.name == name or (g.pattern == "prefixed" and name.startswith(g.name)))}


def test_only_the_replay_principal_may_use_the_replay_topics() -> None:
    """python -m replay writes raw (repaired) input to ``<input>.replay-corrections`` and ``<input>.replay-<run>``
    (README: protect them like the input topic): no principal but the replay user (and the broker's super user)
    may touch them; the real broker enforcing it is tests/integration/test_kafka_security.py."""
    wanted = grants(TOPICS, "ecg-anonymizer", job="job", devices="dev", readers="rd", operators="ops", replay="rp")
    for topic in (f"{TOPICS.input}.replay-corrections", f"{TOPICS.input}.replay-0123abcd",
                  f"{TOPICS.input}.replay-0123abcd.dlq"):
        assert _covering(wanted, "topic", topic) == {("rp", op) for op in ("create", "read", "write", "describe",
                                                                           "delete")}, topic


def test_the_replay_principal_reads_letters_and_input_and_writes_neither() -> None:
    wanted = grants(TOPICS, "ecg-anonymizer", job="job", devices="dev", readers="rd", replay="rp")
    replay = _allowed(wanted, "rp")
    for topic in ("ecg-raw", "ecg-dlq"):
        assert {("topic", topic, "read"), ("topic", topic, "describe")} <= replay
        assert ("topic", topic, "write") not in replay
    assert not {name for kind, name, _ in replay if kind == "topic"} & {"ecg-anomalies", "ecg-model-updates"}
    groups = {name for kind, name, _ in replay if kind == "group"}
    assert groups == {"ecg-anonymizer-replay-"}  # the rebuild's groups, not the live job's
    assert _covering(wanted, "group", "ecg-anonymizer") == {("job", "read")}
