"""connectors.jars: Maven fetch (offline, from the project's local repository), checksum
verification, pipeline.jars string, and the pins shared with connectors/java/pom.xml."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from connectors import jars
from connectors.jars import CONNECTOR_JARS, DEFAULT_MAVEN_REPO, JarsError, ensure_connector_jars, pipeline_jars


def _in_local_repo(spec: jars.JarSpec) -> bool:
    group, artifact, version = spec.artifact.split(":")
    path = DEFAULT_MAVEN_REPO / group.replace(".", "/") / artifact / version / f"{artifact}-{version}.jar"
    return path.is_file()


needs_local_repo = pytest.mark.skipif(
    not all(_in_local_repo(s) for s in CONNECTOR_JARS), reason="run scripts/setup.sh (fills .cache/m2)"
)


def test_pipeline_jars_missing_says_run_setup(tmp_path: Path) -> None:
    with pytest.raises(JarsError, match=r"scripts/setup\.sh"):
        pipeline_jars(tmp_path)


@needs_local_repo
def test_fetch_verify_and_pipeline_string(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    paths = ensure_connector_jars(cache, offline=True)
    assert [p.name for p in paths] == ["flink-connector-kafka.jar", "kafka-clients.jar"]
    assert sorted(p.name for p in cache.iterdir()) == ["flink-connector-kafka.jar", "kafka-clients.jar"]
    assert pipeline_jars(cache, verify=True) == ";".join(p.resolve().as_uri() for p in paths)
    # a corrupted cached jar is noticed by verify=True and fetched again
    (cache / CONNECTOR_JARS[0].name).write_bytes(b"corrupt")
    with pytest.raises(JarsError, match="sha256"):
        pipeline_jars(cache, verify=True)
    ensure_connector_jars(cache, offline=True)
    pipeline_jars(cache, verify=True)


@needs_local_repo
def test_a_jar_that_does_not_match_its_pin_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tampered = dataclasses.replace(CONNECTOR_JARS[1], sha256="0" * 64)
    monkeypatch.setattr(jars, "CONNECTOR_JARS", (tampered,))
    cache = tmp_path / "cache"
    with pytest.raises(JarsError, match="refusing to use it"):
        ensure_connector_jars(cache, offline=True)
    assert not (cache / tampered.name).exists()


def test_unknown_artifact_fails_with_mavens_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if jars.shutil.which("mvn") is None:
        pytest.skip("mvn not installed (scripts/setup.sh installs it)")
    missing = jars.JarSpec("io.ecgflinkanon:no-such-artifact:0.0.0", "no-such-artifact.jar", "0" * 64)
    monkeypatch.setattr(jars, "CONNECTOR_JARS", (missing,))
    with pytest.raises(JarsError, match=r"dependency:copy io\.ecgflinkanon:no-such-artifact:0\.0\.0 failed"):
        ensure_connector_jars(tmp_path / "cache", maven_repo=tmp_path / "m2", offline=True)


def test_java_build_compiles_against_the_pinned_versions() -> None:
    pom = (jars.REPO_ROOT / "connectors" / "java" / "pom.xml").read_text()
    versions = dict(re.findall(r"<([\w.-]+)\.version>([^<]+)</", pom))
    pins = {spec.artifact.split(":")[1]: spec.version for spec in CONNECTOR_JARS}
    assert versions["flink-connector-kafka"] == pins["flink-connector-kafka"]
    assert versions["kafka-clients"] == pins["kafka-clients"]


def test_real_cache_if_present() -> None:
    """After scripts/setup.sh the real jars are in .cache/jars with the pinned checksums."""
    try:
        paths = jars.connector_jar_paths(verify=True)
    except JarsError as exc:
        pytest.skip(str(exc))
    assert paths[0].name == "flink-connector-kafka.jar"
    assert paths[1].name == "kafka-clients.jar"
