"""Shared pytest fixtures.

- ``local_stack`` (session): one ``devstack.stack.LocalStack`` (Apache Kafka + influxd 1.x +
  victoria-metrics) in a temporary run dir, started on first use and stopped at the end of the
  session; asserts that none of its processes is left running. Tests that do not ask for it never
  start anything.
- ``kafka_bootstrap``: ``"127.0.0.1:PORT"`` of that stack's broker.
- ``fresh_topics``: a factory creating uniquely named topics for one test, so tests sharing the
  session broker never see each other's messages::

      def test_x(fresh_topics):
          raw, dlq = fresh_topics("ecg-raw", "ecg-dlq", partitions=4)

Service binaries missing (no ``scripts/setup.sh`` run) -> tests using these fixtures are skipped
with the reason; under CI (``CI`` set) or ``ECG_REQUIRE_STACK=1`` they fail instead.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from devstack.stack import LocalStack

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # make `import connectors`, `contract`, ... work under plain `pytest`
    sys.path.insert(0, str(REPO_ROOT))


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3.0.12 uses deprecated importlib.resources APIs on every protocol import.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:kafka.*")
    config.addinivalue_line("filterwarnings", "ignore:(read_text|open_text) is deprecated:DeprecationWarning")


def _missing_binaries() -> list[str]:
    from devstack.processes import StackError
    from devstack.stack import KAFKA_LIB, KAFKA_VERSION, kafka_classpath

    missing = [b for b in ("influxd", "victoria-metrics", "java") if shutil.which(b) is None]
    try:
        kafka_classpath()
    except StackError:
        missing.append(f"Apache Kafka {KAFKA_VERSION} ({KAFKA_LIB})")
    return missing


def require_stack_binaries() -> None:
    """Fail (CI, ECG_REQUIRE_STACK=1) or skip when a binary of the local stack is missing."""
    missing = _missing_binaries()
    if missing:
        if os.environ.get("CI") or os.environ.get("ECG_REQUIRE_STACK") == "1":
            pytest.fail(f"local stack binaries missing: {', '.join(missing)} (run scripts/setup.sh)")
        pytest.skip(f"local stack binaries missing: {', '.join(missing)} (run scripts/setup.sh)")


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A running LocalStack for the whole session (see module docstring)."""
    require_stack_binaries()
    from devstack.stack import LocalStack

    stack = LocalStack(tmp_path_factory.mktemp("stack"))
    stack.start()
    pids = [r.pid for r in stack.records().values()]
    try:
        yield stack
    finally:
        stack.stop()
        leftover = [p for p in pids if Path(f"/proc/{p}").exists() and _not_zombie(p)]
        assert not leftover, f"local stack processes still running after stop: {leftover}"


def _not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


@pytest.fixture(scope="session")
def kafka_bootstrap(local_stack: LocalStack) -> str:
    return local_stack.kafka_bootstrap


_topic_counter = itertools.count()


@pytest.fixture
def fresh_topics(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Callable[..., list[str]]:
    """Factory: ``fresh_topics(*bases, partitions=1) -> [unique topic names]`` (created, ready)."""
    test_name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]

    from devstack.kafka_admin import create_topics

    def make(*bases: str, partitions: int = 1) -> list[str]:
        suffix = f"{test_name}-{next(_topic_counter)}-{uuid.uuid4().hex[:6]}"
        names = [f"{b}.{suffix}" for b in (bases or ("topic",))]
        create_topics(kafka_bootstrap, {n: partitions for n in names})
        return names

    return make
