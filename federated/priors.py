"""Handing the global prior to each waiting device as a keyed record.

A device that joins waits for global round ``prior_round(first frame)`` (anomaly/device.py). The
global updates reach the detectors as broadcast state, but a broadcast element cannot touch a
device's keyed state, so a waiting device used to look for its round only when one of its own
frames or one of its processing-time poll timers came. PyFlink hands the timers a Python function
registers to the JVM asynchronously, after the bundle that registered them: a checkpoint taken
meanwhile holds no timer for the device. A device whose frames had all been read before such a
checkpoint then waited forever after a restore.

So the job also matches requests and global updates by round, upstream of the detectors (no cycle
in the graph: the requests come from the parsed frames, the globals from the topic):

    first frame of a pid --PriorRequest(pid, round)--> [keyed by round] <--global update text
                                                             |
                                  PriorNotice(pid, round, text), keyed by pid, to the detector

Each side is answered by the other's arrival, records only, no timer. Which prior a device gets
still depends on its first frame's event time alone, and the notice carries the round's text as
published, so a replay releases the same devices with the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PriorRequest:
    """Device ``pid`` was seen for the first time and will wait for global round ``round``."""

    pid: str
    round: int


@dataclass(frozen=True)
class PriorNotice:
    """Global round ``round`` (its JSON text as published) for device ``pid``."""

    pid: str
    round: int
    text: str


@dataclass
class RoundPriors:
    """State of one round: its global update once read back, and who waits for it until then."""

    text: str | None = None
    waiting: list[str] = field(default_factory=list)


def on_request(state: RoundPriors, request: PriorRequest) -> list[PriorNotice]:
    if state.text is not None:
        return [PriorNotice(request.pid, request.round, state.text)]
    if request.pid not in state.waiting:
        state.waiting.append(request.pid)
    return []


def on_global(state: RoundPriors, round_number: int, text: str) -> list[PriorNotice]:
    """The round's global update was read back; the first copy counts (replays carry the same text)."""
    if state.text is None:
        state.text = text
    notices = [PriorNotice(pid, round_number, state.text) for pid in state.waiting]
    state.waiting = []
    return notices
