"""Aggregate rounds with Flower's FedAvg; executed by .venv-flower/bin/python (scripts/setup_flower.sh).

stdin: JSON ``[[{"weights": [[...], ...], "n": N}, ...], ...]`` (rounds of client results);
stdout: JSON ``[[[...], ...] | null, ...]`` -- per round the aggregated arrays, null when Flower
returns no parameters (an empty round). Uses flwr.server.strategy.FedAvg.aggregate_fit, the code path
of Flower's FedAvg server strategy, with FitRes objects as clients would send them.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import FedAvg


def main() -> None:
    rounds = json.load(sys.stdin)
    strategy = FedAvg()
    out = []
    for number, clients in enumerate(rounds, start=1):
        results = [
            (None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters([np.array(a, dtype=np.float64)
                                                                        for a in c["weights"]]), int(c["n"]), {}))
            for c in clients
        ]
        parameters, _ = strategy.aggregate_fit(number, results, [])  # type: ignore[arg-type]
        out.append(None if parameters is None else [a.tolist() for a in parameters_to_ndarrays(parameters)])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
