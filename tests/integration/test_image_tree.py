"""The image's tree runs, not only reads: exactly what the Dockerfile puts into /opt/ecg (its COPY lines),
assembled in a temporary folder without a Docker engine, imports every module it holds and runs the job
from there alone against the real local stack, with the cardio branch on (and off: slow).

"Alone": the processes start in the tree with the image's PYTHONPATH (the tree) and no other first-party
code on any path (no repository, no PYTHONPATH of the test run); the test checks sys.path and where every
module came from. What the build stages produce (jars, the MIT-BIH record) is taken from what
scripts/setup.sh put into .cache (same pins, same checksums).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.config import PROJECT_ROOT
from devstack.deployment_checks import CopyLine, dockerfile_stages, stage_copies
from devstack.simulator import Episode, SimConfig, generate_messages, produce
from flink_jobs.shipping import first_party_packages, image_packages, imported_modules, job_packages, package_modules
from testkit.jobs import JobProcess, wait_until
from testkit.reference import expected_branch, expected_output
from tests.integration.support import IsolatedRun

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
IMAGE_ROOT = "/opt/ecg"
PROJECT_JAR = "ecg-flink-anon-connectors.jar"
START_MS = 1_763_812_800_000
K = 3
ROUND_ARGS = ("--model-update-seconds", "20", "--model-grace-seconds", "5")


def copy_built(copy: CopyLine, target: Path) -> None:
    """A `COPY --from=<build stage>`: the same files as setup.sh leaves them in .cache."""
    (source,) = copy.sources
    jars = PROJECT_ROOT / ".cache" / "jars"
    if (copy.from_stage, source) == ("downloads", "/build/jars"):  # the Kafka connector jars
        target.mkdir(parents=True, exist_ok=True)
        for jar in sorted(jars.glob("*.jar")):
            if jar.name != PROJECT_JAR:
                shutil.copy2(jar, target / jar.name)
    elif (copy.from_stage, source) == ("java", f"/{PROJECT_JAR}"):  # the project's deserializer
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(jars / PROJECT_JAR, target)
    elif (copy.from_stage, source) == ("downloads", "/build/data"):  # the MIT-BIH record
        shutil.copytree(PROJECT_ROOT / ".cache" / "data", target, dirs_exist_ok=True)
    else:
        pytest.fail(f"this test does not know what stage {copy.from_stage} builds at {source}: add it to copy_built")


def assemble_image(stage: str, tree: Path) -> Path:
    """Exactly what `stage` of the Dockerfile puts into /opt/ecg, under `tree`."""
    text = DOCKERFILE.read_text()
    instructions = stage_instructions(text, stage)
    # The image runs from /opt/ecg with only /opt/ecg on PYTHONPATH; the emulation below relies on that.
    assert f"WORKDIR {IMAGE_ROOT}" in instructions
    assert any(i.startswith("ENV ") and f"PYTHONPATH={IMAGE_ROOT} " in i + " " for i in instructions)
    for copy in stage_copies(text, stage):
        if not copy.destination.startswith(IMAGE_ROOT + "/"):
            continue
        target = tree / copy.destination.removeprefix(IMAGE_ROOT + "/")
        if copy.from_stage is not None:
            copy_built(copy, target)
            continue
        for source in copy.sources:
            shutil.copytree(PROJECT_ROOT / source, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return tree


def stage_instructions(text: str, stage: str) -> list[str]:
    stages = dockerfile_stages(text)
    base, own = stages[stage]
    return [*(stage_instructions(text, base) if base else []), *own]


def image_environment(tree: Path) -> dict[str, str]:
    """The test run's environment without any Python path setting, plus the image's PYTHONPATH."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "PYFLINK"))}
    environment.update(PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
    return environment


def run_in_tree(tree: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=tree, env=image_environment(tree), capture_output=True,
                          text=True, timeout=timeout, check=False)


IMPORT_EVERYTHING = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
import connectors.config
print(json.dumps({"path": sys.path, "root": str(connectors.config.PROJECT_ROOT),
                  "files": {name: sys.modules[name].__file__ for name in sys.argv[1:]}}))
"""


def assert_imports_only_from(tree: Path) -> None:
    """Every module of every package in the tree imports, from the tree, with nothing else first-party on sys.path."""
    modules = [module for package in sorted(first_party_packages(tree)) for module, _ in package_modules(package, tree)]
    assert modules
    completed = run_in_tree(tree, "-c", IMPORT_EVERYTHING, *modules)
    assert completed.returncode == 0, f"imports fail in the image's tree:\n{completed.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(completed.stdout.splitlines()[-1])
    assert Path(report["root"]) == tree  # PROJECT_ROOT: hierarchy, jars, .env resolve inside the tree
    outside = {name: file for name, file in report["files"].items() if not Path(file).is_relative_to(tree)}
    assert outside == {}
    ours = first_party_packages(PROJECT_ROOT)
    for entry in report["path"]:
        where = Path(entry or tree).resolve()
        assert where == tree or not ours & first_party_packages(where), f"first-party code on sys.path: {where}"


def installed_in_image() -> set[str]:
    """Distributions the image's pip install brings: requirements.txt without what the Dockerfile filters out
    (`grep -v '^NAME=='`), and everything they depend on (as installed in this venv, same pins)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    excluded = set(re.findall(r"grep -v '\^([A-Za-z0-9_.-]+)=='", DOCKERFILE.read_text()))
    pending = [Requirement(line).name for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#") and line.split("==")[0] not in excluded]
    assert pending  # (the Dockerfile installs requirements.txt whole today: `excluded` is empty)
    found: set[str] = set()
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found:
            continue
        found.add(name)
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return found


@pytest.mark.parametrize("packages", [image_packages(), job_packages(["devstack.simulator"])],
                         ids=["runtime", "simulator"])
def test_the_image_installs_what_its_code_imports(packages: tuple[str, ...]) -> None:
    """The venv here also holds the development requirements: every third-party module the image's code
    imports must come from requirements.txt as the image installs it."""
    from packaging.utils import canonicalize_name

    ours = first_party_packages(PROJECT_ROOT)
    providers = importlib.metadata.packages_distributions()
    installed = installed_in_image()
    missing = set()
    for package in packages:
        for module, path in package_modules(package):
            for name in imported_modules(module, path):
                top = name.split(".")[0]
                if top in ours or top in sys.stdlib_module_names or top == "__future__":
                    continue
                if not {canonicalize_name(d) for d in providers.get(top, [])} & installed:
                    missing.add(f"{module} imports {top}")
    assert sorted(missing) == []


@pytest.fixture(scope="module")
def runtime_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield assemble_image("runtime", tmp_path_factory.mktemp("image") / "ecg")


def test_the_runtime_image_imports_everything_it_holds(runtime_tree: Path) -> None:
    assert_imports_only_from(runtime_tree)
    # The submitter imports the job's settings (the health check imports the standard library only).
    completed = run_in_tree(runtime_tree, "docker/submit_job.py", "--help")
    assert completed.returncode == 0, completed.stderr[-3000:]


def test_the_simulator_image_runs_the_simulator(tmp_path: Path) -> None:
    tree = assemble_image("simulator", tmp_path / "ecg")
    assert_imports_only_from(tree)
    completed = run_in_tree(tree, "-m", "devstack.simulator", "--patients", "2", "--duration", "2", "--dry-run")
    assert completed.returncode == 0, completed.stderr[-3000:]


# Without the branch: slow (issue 21). The default run has the image's job exact (with the branch) and a job with
# the branch off publishing nothing to its topics (test_upgrade_and_rescale.py).
@pytest.mark.parametrize("cardio_branch", ["true", pytest.param("false", marks=pytest.mark.slow)],
                         ids=["cardio-branch", "no-cardio-branch"])
def test_the_job_runs_from_the_runtime_image(runtime_tree: Path, isolated_run: IsolatedRun, tmp_path: Path,
                                             cardio_branch: str) -> None:
    run, stack = isolated_run, isolated_run.stack
    config = SimConfig(patients=8, duration_s=60, start_ms=START_MS, sites=2, end_of_stream=True, partitions=4,
                       seed=11, synthetic=True, episodes=(Episode("dev-0003", "tachycardia", 20, 30),))
    messages = list(generate_messages(config))
    args = run.job_args("--k-anonymity", str(K), *ROUND_ARGS)
    expected = expected_output(messages, k=K)
    assert expected.points > 0
    assert produce(messages, stack.kafka_bootstrap, run.raw_topic).errors == 0

    environment = {**image_environment(runtime_tree), "CARDIO_BRANCH": cardio_branch}
    job = JobProcess(args, tmp_path / "job.log", env=environment, cwd=runtime_tree)
    try:
        wait_until(lambda: run.points() >= expected.points, 240, f"{expected.points} points", job=job)
        if cardio_branch == "true":
            branch = expected_branch(messages, args)
            wanted_updates = {u.update_id for u in [*branch.local_updates, *branch.global_updates]}
            assert branch.global_updates, "the run must close federated rounds"
            wait_until(lambda: {u["update_id"] for u in run.model_updates()} >= wanted_updates, 120,
                       "all model updates", job=job)
        time.sleep(4)  # two checkpoint intervals: nothing else may arrive
        assert run.points() == expected.points
        assert run.points_by_level() == expected.points_by_level
        anomalies, updates = run.anomalies(), run.model_updates()
    finally:
        job.stop()
    if cardio_branch == "true":
        assert {a["event_id"] for a in anomalies} == {e.event_id for e in branch.anomalies}
        assert {u["update_id"] for u in updates} == wanted_updates
    else:
        assert anomalies == [] and updates == []
