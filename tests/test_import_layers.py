"""Imports run one way: pure cores <- connectors <- operators <- job entry points <- dev tools <- testkit <- tests
(and benchmarks, which share testkit with tests but never import each other), with no
loop between packages. Read from the source (flink_jobs/shipping.py), so a new import that breaks a layer
fails here before it ships."""

from __future__ import annotations

from pathlib import Path

import pytest

from flink_jobs.shipping import (
    JOB_ENTRY_MODULES,
    PROJECT_ROOT,
    first_party_packages,
    imported_modules,
    job_packages,
    package_graph,
    package_modules,
)

CORE = frozenset({"anomaly", "cardio", "contract", "federated", "hierarchy", "privacy"})
# Rank of each layer: a package imports only packages of its own rank or below.
# replay, backfill and views (deployment tooling: they run or submit jobs, never shipped) rank with devstack.
LAYERS = {**dict.fromkeys(CORE, 0), "connectors": 1, "operators": 2, "flink_jobs": 3, "devstack": 4, "replay": 4,
          "backfill": 4, "views": 4, "testkit": 5, "tests": 6}
DEVELOPMENT = frozenset({"devstack", "views", "tests", "testkit", "benchmarks", "replay", "backfill"})


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every package that reaches itself, with one path back to it."""
    found = []
    for start in sorted(graph):
        paths = [[start, name] for name in sorted(graph[start])]
        seen: set[str] = set()
        while paths:
            path = paths.pop()
            if path[-1] == start:
                found.append(path)
                break
            if path[-1] not in seen:
                seen.add(path[-1])
                paths.extend([*path, name] for name in sorted(graph.get(path[-1], ())))
    return found


def test_every_package_has_a_layer() -> None:
    assert set(LAYERS) == set(first_party_packages())


def test_the_package_import_graph_has_no_cycles() -> None:
    assert cycles(package_graph()) == []
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b", "a"], ["b", "a", "b"]]  # the check can fail


def test_no_package_imports_a_higher_layer() -> None:
    upward = [f"{package} -> {name}" for package, names in package_graph().items() for name in sorted(names)
              if LAYERS[name] > LAYERS[package]]
    assert upward == []


@pytest.mark.parametrize("package", sorted(CORE))
def test_pure_cores_import_no_flink_and_no_outer_code(package: str) -> None:
    outer = {"pyflink", *(name for name in LAYERS if name not in CORE)}
    found = sorted({f"{module} imports {name}" for module, path in package_modules(package)
                    for name in imported_modules(module, path) if name.split(".")[0] in outer})
    assert found == []


@pytest.mark.parametrize(("package", "forbidden"), [("benchmarks", "tests"), ("tests", "benchmarks"),
                                                     ("testkit", "tests"), ("testkit", "benchmarks")])
def test_tests_and_benchmarks_share_only_testkit(package: str, forbidden: str) -> None:
    # benchmarks has no __init__.py (a folder of scripts), so the package graph above does not see it.
    found = sorted({f"{module} imports {name}" for module, path in package_modules(package)
                    for name in imported_modules(module, path) if name.split(".")[0] == forbidden})
    assert found == []


def test_jobs_ship_no_development_code() -> None:
    assert not DEVELOPMENT & set(job_packages())


def test_every_job_entry_point_is_listed_for_the_image() -> None:
    from flink_jobs import ecg_anonymization_job

    assert set(ecg_anonymization_job.ENTRY_MODULES) <= set(JOB_ENTRY_MODULES)
    for module in JOB_ENTRY_MODULES:
        assert (PROJECT_ROOT / (module.replace(".", "/") + ".py")).is_file(), module


def test_imports_are_read_like_python_reads_them(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from . import sub\n")
    (package / "sub" / "__init__.py").write_text("")
    module = package / "sub" / "mod.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nimport os.path\nfrom .. import other\nfrom .sibling import x\n"
        "if TYPE_CHECKING:\n    import typing_only\nelse:\n    import runtime_only\n"
        "def late():\n    from deep.er import thing\n"
    )
    assert imported_modules("pkg.sub.mod", module) == {
        "typing", "typing.TYPE_CHECKING", "os.path", "pkg", "pkg.other", "pkg.sub.sibling", "pkg.sub.sibling.x",
        "runtime_only", "deep.er", "deep.er.thing"}
    assert imported_modules("pkg", package / "__init__.py") == {"pkg", "pkg.sub"}
    assert first_party_packages(tmp_path) == {"pkg"}
    assert first_party_packages(PROJECT_ROOT) >= CORE
