"""Kafka connector jars for PyFlink, fetched from Maven Central and verified by SHA-256.

The two jars the job needs are the ones Apache publishes on Maven Central:

- ``org.apache.flink:flink-connector-kafka:4.0.1-2.0`` -> ``flink-connector-kafka.jar``
- ``org.apache.kafka:kafka-clients:3.9.1`` -> ``kafka-clients.jar`` (the version the connector is
  built for, and the local broker's)

Maven (``mvn -C dependency:copy``: strict checksums against the repository's) downloads them into
the project's own local repository ``.cache/m2`` and copies them into ``.cache/jars`` under the names
above; both are then checked against hard-coded SHA-256 values, so a changed artifact fails loudly
instead of silently changing the classpath. A jar already in place with the right checksum is not
fetched again (offline after ``scripts/setup.sh``). The Dockerfile fetches the same coordinates the
same way (its pins must equal these: tests/devstack/test_deployment_checks.py), and
``connectors/java/pom.xml`` compiles against the same versions (tests/connectors/test_jars.py).

``pipeline_jars()`` returns the ``pipeline.jars`` value (``file://a;file://b``), adding the
project's own ``ecg-flink-anon-connectors.jar`` (built by ``scripts/setup.sh`` with Maven from
``connectors/java``) when it exists.

CLI: ``python -m connectors.jars [--cache-dir DIR] [--maven-repo DIR] [--offline] [--print]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "jars"
#: the project's own Maven local repository (not ~/.m2): scripts/setup.sh and scripts/test.sh use it too
DEFAULT_MAVEN_REPO = REPO_ROOT / ".cache" / "m2"
#: pinned plugin, so that a second run resolves nothing new (offline)
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
PROJECT_JAR_NAME = "ecg-flink-anon-connectors.jar"


def project_class(qualified_name: str) -> Any:
    """The JVM class `qualified_name` of the project jar (connectors/java), through the PyFlink gateway; a clear
    error when the jar is not on the classpath (py4j then answers with a JavaPackage, not a class)."""
    from pyflink.java_gateway import get_gateway  # only where a job is built: this module also runs in setup

    found: Any = get_gateway().jvm
    for part in qualified_name.split("."):
        found = getattr(found, part)
    if not callable(found) or type(found).__name__ == "JavaPackage":
        raise RuntimeError(f"{qualified_name} is not on the classpath: run scripts/setup.sh to build "
                           f".cache/jars/{PROJECT_JAR_NAME}")
    return found


@dataclass(frozen=True)
class JarSpec:
    artifact: str  # Maven coordinates groupId:artifactId:version
    name: str  # file name in the cache dir
    sha256: str

    @property
    def version(self) -> str:
        return self.artifact.rsplit(":", 1)[1]


CONNECTOR_JARS: tuple[JarSpec, ...] = (
    JarSpec(
        artifact="org.apache.flink:flink-connector-kafka:4.0.1-2.0",
        name="flink-connector-kafka.jar",
        sha256="842885a51c768b2f31c946a2071656c166ee8cc6d3c02fe6c557e134e03bf228",
    ),
    JarSpec(
        artifact="org.apache.kafka:kafka-clients:3.9.1",
        name="kafka-clients.jar",
        sha256="7568b998572d256f0b7bc0afdc1b7a2588b8b08415c62ce314c864a6851ae9d9",
    ),
)


class JarsError(RuntimeError):
    """Connector jars are missing or do not match the expected checksum."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_valid(path: Path, spec: JarSpec) -> bool:
    return path.is_file() and sha256_file(path) == spec.sha256


def maven_copy_command(spec: JarSpec, output_dir: Path, *, maven_repo: Path, offline: bool = False) -> list[str]:
    """``mvn dependency:copy`` of one artifact into ``output_dir`` as ``artifactId.jar``."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarsError("mvn (Apache Maven) not found: run scripts/setup.sh (it installs Debian's maven)")
    return [
        mvn,
        "-B",
        "-q",
        "-Dstyle.color=never",
        "-C",  # strict checksums: a download that does not match the repository's checksum fails
        *(["-o"] if offline else []),
        f"-Dmaven.repo.local={maven_repo}",
        f"{MAVEN_DEPENDENCY_PLUGIN}:copy",
        f"-Dartifact={spec.artifact}",
        f"-DoutputDirectory={output_dir}",
        "-Dmdep.stripVersion=true",
    ]


def _maven_env() -> dict[str, str]:
    """Maven's JVM with the quick-start JIT: a dependency:copy runs a few seconds, not long enough to gain."""
    env = dict(os.environ)
    env.setdefault("MAVEN_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    return env


def _fetch(specs: list[JarSpec], cache_dir: Path, *, maven_repo: Path, offline: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="ecg-jars-", dir=cache_dir) as tmp:
        for spec in specs:
            cmd = maven_copy_command(spec, Path(tmp), maven_repo=maven_repo, offline=offline)
            # no POM here: run outside any Maven project so that none is picked up by accident
            proc = subprocess.run(cmd, cwd=tmp, env=_maven_env(), capture_output=True, text=True, check=False)
            fetched = Path(tmp) / f"{spec.artifact.split(':')[1]}.jar"
            if proc.returncode != 0 or not fetched.is_file():
                raise JarsError(
                    f"mvn dependency:copy {spec.artifact} failed (exit {proc.returncode}):\n"
                    f"{(proc.stdout + proc.stderr).strip()[-3000:]}"
                )
            got = sha256_file(fetched)
            if got != spec.sha256:
                raise JarsError(
                    f"{spec.artifact}: sha256 {got}, expected {spec.sha256} ({spec.name}); refusing to use it"
                )
            os.replace(fetched, cache_dir / spec.name)


def ensure_connector_jars(
    cache_dir: Path = DEFAULT_CACHE_DIR,
    *,
    maven_repo: Path = DEFAULT_MAVEN_REPO,
    offline: bool = False,
) -> list[Path]:
    """Make sure the Kafka connector jars are in ``cache_dir`` with the expected SHA-256.

    Runs Maven only when a jar is missing or mismatched (``offline=True``: from ``maven_repo``
    alone). Returns the jar paths in classpath order.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    missing = [s for s in CONNECTOR_JARS if not _is_valid(cache_dir / s.name, s)]
    if missing:
        _fetch(missing, cache_dir, maven_repo=Path(maven_repo).resolve(), offline=offline)
    paths = [cache_dir / s.name for s in CONNECTOR_JARS]
    for spec, path in zip(CONNECTOR_JARS, paths, strict=True):
        if not _is_valid(path, spec):  # pragma: no cover - defensive
            raise JarsError(f"{path} does not match sha256 {spec.sha256}")
    return paths


def connector_jar_paths(cache_dir: Path = DEFAULT_CACHE_DIR, *, verify: bool = False) -> list[Path]:
    """Jar paths for the classpath: the connector jars plus the project jar when present.

    Raises ``JarsError`` (telling to run ``scripts/setup.sh``) when a connector jar is missing.
    ``verify=True`` also checks the SHA-256 (reads ~10 MB).
    """
    cache_dir = Path(cache_dir)
    paths: list[Path] = []
    for spec in CONNECTOR_JARS:
        p = cache_dir / spec.name
        if not p.is_file():
            raise JarsError(f"Kafka connector jar {p} is missing: run scripts/setup.sh (or python -m connectors.jars)")
        if verify and not _is_valid(p, spec):
            raise JarsError(
                f"{p} does not match sha256 {spec.sha256}: run scripts/setup.sh (or python -m connectors.jars)"
            )
        paths.append(p.resolve())
    project = cache_dir / PROJECT_JAR_NAME
    if project.is_file():
        paths.append(project.resolve())
    return paths


def pipeline_jars(cache_dir: Path = DEFAULT_CACHE_DIR, *, verify: bool = False) -> str:
    """``pipeline.jars`` value: ``file:///abs/a.jar;file:///abs/b.jar[;...project jar]``."""
    return ";".join(p.as_uri() for p in connector_jar_paths(cache_dir, verify=verify))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m connectors.jars", description=__doc__.split("\n")[0])
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    ap.add_argument("--maven-repo", type=Path, default=DEFAULT_MAVEN_REPO, help="Maven local repository")
    ap.add_argument("--offline", action="store_true", help="resolve from --maven-repo only")
    ap.add_argument("--print", action="store_true", help="print the pipeline.jars value")
    ns = ap.parse_args(argv)
    try:
        paths = ensure_connector_jars(ns.cache_dir, maven_repo=ns.maven_repo, offline=ns.offline)
    except JarsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if ns.print:
        print(pipeline_jars(ns.cache_dir))
    else:
        for spec, p in zip(CONNECTOR_JARS, paths, strict=True):
            print(f"ok {p} ({spec.artifact}, sha256 {spec.sha256[:12]}...)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
