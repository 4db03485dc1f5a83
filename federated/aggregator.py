"""The FedAvg aggregator as a pure state machine (the Flink operator only stores its state and
feeds it signals, the watermark and timers).

Determinism: the global update of round ``r`` is FedAvg of exactly the local updates of round ``r``,
whatever the order or the moment they arrive in:

- a live device sends its update for round ``r`` while processing a frame of event time
  ``t < close_ms(r)``; the watermark passed along with that record is below ``t`` (per-partition
  watermarks, frames of a device in order), so the aggregator cannot have closed round ``r`` yet;
- a device that has joined and waits for its prior buffers its frames; its updates come later, so
  it is *pending* from its JoinSignal to its ReadySignal and no round it could still contribute to
  (``close_ms(r) > join ts``) is closed meanwhile. The round it waits for closes before its own
  join time, so waiting never blocks itself; an earlier-joined device never waits for a later one.

Rounds close in increasing order. A round with updates publishes their FedAvg; a round without
any publishes only when a joining device asked for it, repeating the newest weights before it
(``carried_from``) or ``weights: null`` if there are none yet, so a device that joins always gets an
answer for exactly the round it waits for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from federated.fedavg import ClientUpdate, fedavg
from federated.messages import GlobalUpdate, JoinSignal, LocalUpdate, ModelSignal, ReadySignal
from federated.model import ModelWeights
from federated.rounds import RoundClock

HISTORY_ROUNDS = 1024  # rounds with weights kept for late requests (older ones: newest kept answers)
PUBLISHED_MEMORY = 4096  # rounds remembered as published, to publish each round once

AggregatorOutput = LocalUpdate | GlobalUpdate


@dataclass
class AggregatorState:
    open_rounds: dict[int, dict[str, LocalUpdate]] = field(default_factory=dict)
    requested: set[int] = field(default_factory=set)
    pending: dict[str, int] = field(default_factory=dict)  # pid -> join event time
    closed_through: int | None = None  # every round <= this is closed
    history: dict[int, ModelWeights] = field(default_factory=dict)  # rounds with averaged weights
    published: set[int] = field(default_factory=set)
    late_updates: int = 0
    rounds_published: int = 0

    def activity_rounds(self) -> list[int]:
        return sorted(set(self.open_rounds) | self.requested)


class Aggregator:
    def __init__(self, clock: RoundClock, dp: bool = False) -> None:
        self.clock = clock
        self.dp = dp

    # --- signals ---------------------------------------------------------------------------

    def on_signal(self, state: AggregatorState, signal: ModelSignal, watermark: int) -> list[AggregatorOutput]:
        """Apply one device signal, then close what the watermark allows. Returns what to publish."""
        out: list[AggregatorOutput] = []
        if isinstance(signal, LocalUpdate):
            out.append(signal)  # every local update is published as it is
            if self._is_closed(state, signal.round):
                state.late_updates += 1  # only if the watermark guarantee was broken (idle partitions)
            else:
                state.open_rounds.setdefault(signal.round, {})[signal.pid] = signal
        elif isinstance(signal, JoinSignal):
            state.pending[signal.pid] = signal.join_ts_ms
            if self._is_closed(state, signal.round):
                out.extend(self._publish_requested(state, signal.round))
            else:
                state.requested.add(signal.round)
        elif isinstance(signal, ReadySignal):
            state.pending.pop(signal.pid, None)
        out.extend(self.close(state, watermark))
        return out

    def rounds_to_schedule(self, state: AggregatorState) -> list[int]:
        """Event times at which the operator should call ``close`` (one timer per open round)."""
        return [self.clock.close_ms(r) - 1 for r in state.activity_rounds()]

    # --- closing -----------------------------------------------------------------------------

    def closable_through(self, state: AggregatorState, watermark: int) -> int:
        """Highest round that may be closed: event time has reached its close time and no pending
        device joined before it."""
        by_watermark = (watermark + 1 - self.clock.grace_ms) // self.clock.update_ms
        if not state.pending:
            return by_watermark
        by_pending = (min(state.pending.values()) - self.clock.grace_ms) // self.clock.update_ms
        return min(by_watermark, by_pending)

    def _is_closed(self, state: AggregatorState, round_number: int) -> bool:
        return state.closed_through is not None and round_number <= state.closed_through

    def close(self, state: AggregatorState, watermark: int) -> list[AggregatorOutput]:
        limit = self.closable_through(state, watermark)
        if state.closed_through is not None and limit <= state.closed_through:
            return []
        out: list[AggregatorOutput] = []
        for round_number in state.activity_rounds():
            if round_number > limit:
                break
            out.append(self._close_round(state, round_number))
        state.closed_through = limit
        self._prune(state)
        return out

    def _close_round(self, state: AggregatorState, round_number: int) -> GlobalUpdate:
        updates = state.open_rounds.pop(round_number, {})
        state.requested.discard(round_number)
        aggregate = fedavg(ClientUpdate(u.pid, u.weights, u.n_samples) for u in updates.values())
        if aggregate is not None:
            state.history[round_number] = aggregate.weights
            update = GlobalUpdate(round_number, aggregate.weights, aggregate.n_samples, aggregate.clients,
                                  self.clock.close_ms(round_number), None, self.dp)
        else:
            update = self._carried(state, round_number)
        state.published.add(round_number)
        state.rounds_published += 1
        return update

    def _carried(self, state: AggregatorState, round_number: int) -> GlobalUpdate:
        earlier = [r for r in state.history if r < round_number]
        source = max(earlier) if earlier else None
        weights = None if source is None else state.history[source]
        return GlobalUpdate(round_number, weights, 0, 0, self.clock.close_ms(round_number), source, self.dp)

    def _publish_requested(self, state: AggregatorState, round_number: int) -> list[AggregatorOutput]:
        """A joining device asks for a round that is already closed: publish it unless it was."""
        if round_number in state.published:
            return []
        state.published.add(round_number)
        state.rounds_published += 1
        return [self._carried(state, round_number)] if round_number not in state.history else []

    def _prune(self, state: AggregatorState) -> None:
        if len(state.history) > HISTORY_ROUNDS:
            for old in sorted(state.history)[: len(state.history) - HISTORY_ROUNDS]:
                del state.history[old]
        if state.closed_through is not None and len(state.published) > PUBLISHED_MEMORY:
            floor = state.closed_through - PUBLISHED_MEMORY
            state.published = {r for r in state.published if r > floor}
