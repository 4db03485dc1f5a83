"""Our FedAvg equals Flower's FedAvg (flwr 1.41.0, its own virtualenv .venv-flower made by
scripts/setup_flower.sh) on identical inputs: weighted rounds, one client, an empty round."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from federated.fedavg import ClientUpdate, fedavg
from federated.model import ModelWeights

ROOT = Path(__file__).resolve().parents[2]
FLOWER_PYTHON = ROOT / ".venv-flower" / "bin" / "python"
RUNNER = ROOT / "benchmarks" / "flower_fedavg_runner.py"


def flower_rounds(rounds: list[list[ClientUpdate]]) -> list[list[np.ndarray] | None]:
    if not FLOWER_PYTHON.exists():
        if os.environ.get("CI") or os.environ.get("ECG_REQUIRE_STACK") == "1":
            pytest.fail(f"{FLOWER_PYTHON} missing: run scripts/setup.sh --with-checkers")
        pytest.skip(f"{FLOWER_PYTHON} missing: run scripts/setup.sh --with-checkers")
    payload = [[{"weights": [a.tolist() for a in u.weights.as_arrays()], "n": u.n_samples} for u in clients]
               for clients in rounds]
    completed = subprocess.run([str(FLOWER_PYTHON), str(RUNNER)], input=json.dumps(payload), capture_output=True,
                               text=True, check=True, timeout=300)
    return [None if r is None else [np.array(a) for a in r] for r in json.loads(completed.stdout.splitlines()[-1])]


def test_equal_to_flower_fedavg() -> None:
    rng = np.random.default_rng(9)

    def client(pid: str, n: int) -> ClientUpdate:
        hr = float(rng.uniform(55, 110))
        return ClientUpdate(pid, ModelWeights(hr, hr * hr + float(rng.uniform(4, 60)), hr + 1, hr * hr + 5,
                                              tuple(float(v) for v in rng.normal(0, 0.3, 4))), n)

    rounds = [
        [client(f"p{i}", int(rng.integers(1, 40))) for i in range(12)],  # a round of 12 devices
        [client("a", 1), client("b", 3)],  # known weights: 1/4 and 3/4
        [client("solo", 7)],  # one client
        [],  # empty round
    ]
    flower = flower_rounds(rounds)
    for clients, theirs in zip(rounds, flower, strict=True):
        ours = fedavg(clients)
        if not clients:
            assert ours is None and theirs is None
            continue
        assert ours is not None and theirs is not None
        for mine, flowers in zip(ours.weights.as_arrays(), theirs, strict=True):
            np.testing.assert_allclose(mine, flowers, rtol=1e-12, atol=1e-12)
    solo = rounds[2][0]
    assert flower[2] is not None
    np.testing.assert_array_equal(np.concatenate(flower[2]), np.concatenate(solo.weights.as_arrays()))
