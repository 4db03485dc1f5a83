"""Messages of the topic `ecg-model-updates` (docs/contract.md) and the signals devices send the
aggregator inside the job.

Topic messages: ``{"update_id", "kind": "local"|"global", "pid"|null, "round", "weights", "n_samples",
"ts", ...}``. ``update_id`` is a digest of kind, pid and round: a device sends at most one local
update per round and the aggregator one global update per round, so the id names the update, and a
replay after a restore carries the same id (and, the job being deterministic, the same bytes).
Only the pseudonym ``pid`` appears, never a raw identifier or a quasi-identifier.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from federated.model import ModelWeights

KIND_LOCAL = "local"
KIND_GLOBAL = "global"


def update_id(kind: str, pid: str | None, round_number: int) -> str:
    return hashlib.sha256(f"{kind}|{pid or ''}|{round_number}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class LocalUpdate:
    pid: str
    round: int
    weights: ModelWeights
    n_samples: int
    ts_ms: int  # event time of the frame that crossed the round boundary
    prior_round: int | None  # the global round the device started from (None: cold start)
    dp: bool = False

    @property
    def update_id(self) -> str:
        return update_id(KIND_LOCAL, self.pid, self.round)

    def to_json(self) -> str:
        return json.dumps({
            "update_id": self.update_id, "kind": KIND_LOCAL, "pid": self.pid, "round": self.round,
            "weights": self.weights.to_json(), "n_samples": self.n_samples, "ts": self.ts_ms,
            "prior_round": self.prior_round, "dp": self.dp,
        }, sort_keys=True, allow_nan=False)


@dataclass(frozen=True)
class GlobalUpdate:
    round: int
    weights: ModelWeights | None  # None: no device has contributed yet (a "round closed" marker)
    n_samples: int
    clients: int
    ts_ms: int  # close time of the round
    carried_from: int | None  # round whose weights this round repeats (no client this round)
    dp: bool = False

    @property
    def update_id(self) -> str:
        return update_id(KIND_GLOBAL, None, self.round)

    def to_json(self) -> str:
        return json.dumps({
            "update_id": self.update_id, "kind": KIND_GLOBAL, "pid": None, "round": self.round,
            "weights": None if self.weights is None else self.weights.to_json(), "n_samples": self.n_samples,
            "ts": self.ts_ms, "clients": self.clients, "carried_from": self.carried_from, "dp": self.dp,
        }, sort_keys=True, allow_nan=False)


def parse_global(text: str | bytes) -> GlobalUpdate | None:
    """A global update from the topic; None for anything else (local updates, foreign messages)."""
    try:
        data: dict[str, Any] = json.loads(text)
        if not isinstance(data, dict) or data.get("kind") != KIND_GLOBAL:
            return None
        weights = data.get("weights")
        update = GlobalUpdate(
            round=int(data["round"]),
            weights=None if weights is None else ModelWeights.from_json(weights),
            n_samples=int(data["n_samples"]),
            clients=int(data.get("clients", 0)),
            ts_ms=int(data["ts"]),
            carried_from=None if data.get("carried_from") is None else int(data["carried_from"]),
            dp=bool(data.get("dp", False)),
        )
    except (ValueError, KeyError, TypeError):
        return None
    return update if data.get("update_id") == update.update_id else None


# --- inside the job: device -> aggregator ----------------------------------------------------


@dataclass(frozen=True)
class JoinSignal:
    """A device was seen for the first time at ``join_ts_ms`` and waits for global round ``round``
    (its prior). Until its ReadySignal the aggregator keeps every round it could still contribute
    to open."""

    pid: str
    join_ts_ms: int
    round: int


@dataclass(frozen=True)
class ReadySignal:
    """The device has its prior and has processed the frames it buffered meanwhile (their local
    updates were sent before this signal, on the same channel)."""

    pid: str


ModelSignal = LocalUpdate | JoinSignal | ReadySignal
