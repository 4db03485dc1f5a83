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


def test_no_principal_but_the_admin_may_read_the_replay_topics() -> None:
    """python -m replay writes raw (repaired) input to ``<input>.replay-corrections`` and ``<input>.replay-<run>``
    (README: protect them like the input topic). No grant names them or a prefix of them, so with
    allow.everyone.if.no.acl.found=false only the broker's super user (the admin, who runs the replay tool) reads
    them; the real broker refusing the others is tests/integration/test_kafka_security.py."""
    wanted = grants(TOPICS, "ecg-anonymizer", job="job", devices="dev", readers="rd", operators="ops")
    for topic in (f"{TOPICS.input}.replay-corrections", f"{TOPICS.input}.replay-0123abcd",
                  f"{TOPICS.input}.replay-0123abcd.dlq"):
        covering = [g for g in wanted if g.resource_type == "topic"
                    and (g.name == topic or (g.pattern == "prefixed" and topic.startswith(g.name)))]
        assert covering == [], (topic, covering)
