"""Fixtures of the end-to-end tests (the shared local stack comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.support import IsolatedRun


@pytest.fixture
def isolated_run(local_stack: Any, fresh_topics: Callable[..., list[str]], tmp_path: Path) -> IsolatedRun:
    """Own topics (input with 4 partitions, DLQ) and database for this test."""
    return IsolatedRun.create(local_stack, fresh_topics, tmp_path)
