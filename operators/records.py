"""Records passed between the job's operators (pickled by PyFlink between Python operators)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from privacy.model import Frame, PublishedFrame


@dataclass(frozen=True)
class SourcePosition:
    """Where a record came from; lets late records be re-read from the input topic."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class KeyedFrame:
    """A valid, pseudonymized frame with its window key (the configured group field, e.g. site)."""

    group: str
    frame: Frame
    position: SourcePosition


@dataclass(frozen=True)
class WindowOutput:
    """What one anonymization window publishes, plus its accounting."""

    group: str
    window_start_ms: int
    window_end_ms: int
    published: list[PublishedFrame]
    metrics: Any
