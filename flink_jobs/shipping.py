"""What a job ships: the first-party packages its entry modules import, read from the source (no import runs).

The job hands exactly these packages to its Python workers (``stage_packages`` + ``add_python_file``); the
Dockerfile copies the same ones into ``/opt/ecg`` (devstack.deployment_checks.check_image_code compares
them). Whole packages are shipped, so the closure follows every module of a package it reaches, not only
the modules imported: a package on a worker never imports one that was left behind. Development code
(devstack, testkit, tests, benchmarks) is never reached from a job: tests/test_import_layers.py keeps it so.

    python -m flink_jobs.shipping            # the packages of the job (JOB_ENTRY_MODULES), one a line
"""

from __future__ import annotations

import ast
import atexit
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The modules a job is started from (`python -m` / `flink run -py`). Their closure is what the job ships.
JOB_ENTRY_MODULES = ("flink_jobs.ecg_anonymization_job", "flink_jobs.cardio_job")
# What the image runs besides the job: the submitter and the health check (docker/, plain scripts).
IMAGE_SCRIPTS = ("docker/submit_job.py", "docker/healthcheck.py")


def first_party_packages(root: Path = PROJECT_ROOT) -> frozenset[str]:
    """Top-level packages of the repository (folders with an ``__init__.py``)."""
    return frozenset(path.parent.name for path in root.glob("*/__init__.py"))


def package_modules(package: str, root: Path = PROJECT_ROOT) -> Iterator[tuple[str, Path]]:
    """(dotted name, file) of every module of a top-level package."""
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of the module except the bodies of ``if TYPE_CHECKING:`` (imports for mypy only)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))


def imported_modules(module: str, path: Path) -> set[str]:
    """Dotted names a module imports at run time (anywhere in it, functions too), relative ones resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(part for part in [*base_parts, node.module or ""] if part)
            else:
                base = node.module or ""
            names.add(base)
            # `from package import module` imports the module too.
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def package_imports(package: str, root: Path = PROJECT_ROOT) -> set[str]:
    """The other first-party packages the modules of ``package`` import."""
    packages = first_party_packages(root)
    found = {name.split(".")[0] for module, path in package_modules(package, root)
             for name in imported_modules(module, path)}
    return {name for name in found if name in packages and name != package}


def package_graph(root: Path = PROJECT_ROOT) -> dict[str, set[str]]:
    """Every top-level package -> the other first-party packages it imports."""
    return {package: package_imports(package, root) for package in sorted(first_party_packages(root))}


def _closure(start: Iterable[str], root: Path) -> tuple[str, ...]:
    packages = first_party_packages(root)
    reached: set[str] = set()
    pending = [name for name in start if name in packages]
    while pending:
        package = pending.pop()
        if package not in reached:
            reached.add(package)
            pending.extend(package_imports(package, root))
    return tuple(sorted(reached))


def job_packages(entry_modules: Iterable[str] = JOB_ENTRY_MODULES, root: Path = PROJECT_ROOT) -> tuple[str, ...]:
    """The first-party packages a job started from ``entry_modules`` needs on its workers, sorted."""
    return _closure((module.split(".")[0] for module in entry_modules), root)


def image_packages(
    entry_modules: Iterable[str] = JOB_ENTRY_MODULES, scripts: Iterable[str] = IMAGE_SCRIPTS,
    root: Path = PROJECT_ROOT,
) -> tuple[str, ...]:
    """The packages the image holds: the job's and those of the scripts it runs (docker/), sorted."""
    script_imports = {name.split(".")[0] for script in scripts
                      for name in imported_modules(Path(script).stem, root / script)}
    return _closure([*(module.split(".")[0] for module in entry_modules), *sorted(script_imports)], root)


def stage_packages(packages: Iterable[str], root: Path = PROJECT_ROOT) -> Path:
    """A new folder holding copies of ``packages`` and nothing else, removed when this process exits: the one
    folder a job ships (``add_python_file``). Flink puts a shipped folder itself on the workers' PYTHONPATH,
    so packages travel inside a folder: shipped one by one, ``import connectors`` would fail on a worker."""
    staging = Path(tempfile.mkdtemp(prefix="ecg-job-code-"))
    atexit.register(shutil.rmtree, staging, ignore_errors=True)
    folder = staging / "ecg_job_code"
    for package in packages:
        shutil.copytree(root / package, folder / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return folder


if __name__ == "__main__":
    print("\n".join(job_packages(sys.argv[1:] or JOB_ENTRY_MODULES)))
