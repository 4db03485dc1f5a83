"""Client for the reference R-peak detectors (neurokit2, wfdb XQRS) in .venv-refs.

The references run in their own virtualenv (scripts/setup_refs.sh) through
``testkit/reference_detectors_runner.py``; this module hands them signals and reads back sample
indices, so the project's own environment never imports them.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REFS_PYTHON = ROOT / ".venv-refs" / "bin" / "python"
RUNNER = ROOT / "testkit" / "reference_detectors_runner.py"
REFERENCES = ("neurokit2", "xqrs")


class ReferencesUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class ReferenceResult:
    peaks: dict[str, np.ndarray]  # reference name -> R-peak sample indices
    seconds: dict[str, float]  # time each reference took inside the subprocess


def run_references(
    signals: list[np.ndarray], rates: list[float], timeout_s: float = 600.0
) -> tuple[list[ReferenceResult], dict[str, str]]:
    """R-peaks of each signal by every reference detector; also returns the package versions."""
    if not REFS_PYTHON.exists():
        raise ReferencesUnavailable(f"{REFS_PYTHON} is missing: run scripts/setup_refs.sh (creates .venv-refs)")
    with tempfile.TemporaryDirectory(prefix="cardio-refs-") as tmp:
        path = Path(tmp) / "signals.npz"
        arrays = {f"signal_{i}": np.asarray(x, dtype=np.float64) for i, x in enumerate(signals)}
        np.savez(path, fs=np.asarray(rates, dtype=np.float64), **arrays)  # type: ignore[arg-type]
        proc = subprocess.run(
            [str(REFS_PYTHON), str(RUNNER), str(path)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    if proc.returncode != 0:
        raise ReferencesUnavailable(f"reference detectors failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    payload = json.loads(proc.stdout.strip().splitlines()[-1])
    results = [
        ReferenceResult(
            peaks={name: np.asarray(r[name], dtype=np.int64) for name in REFERENCES},
            seconds={name: float(v) for name, v in r["seconds"].items()},
        )
        for r in payload["results"]
    ]
    return results, {str(k): str(v) for k, v in payload["versions"].items()}
