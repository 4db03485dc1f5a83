"""Reference R-peak detectors (neurokit2, wfdb XQRS); executed by .venv-refs/bin/python.

These are batch (whole-record) detectors with heavy dependencies, so they live in their own
virtualenv (scripts/setup_refs.sh) and are called via subprocess (cardio.references).

Usage: reference_detectors_runner.py SIGNALS.npz  -> JSON on stdout (last line):
    {"versions": {...}, "results": [{"neurokit2": [sample indices], "xqrs": [...], "seconds": {...}}, ...]}
SIGNALS.npz holds ``fs`` (one value per signal) and the signals as ``signal_0``, ``signal_1``, ...
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
import time
import warnings

import numpy as np


def neurokit2_peaks(x: np.ndarray, fs: float) -> list[int]:
    import neurokit2 as nk

    # neurokit2's default pipeline: its own cleaning filter, then its gradient-based detector.
    cleaned = nk.ecg_clean(x, sampling_rate=fs, method="neurokit")
    _, info = nk.ecg_peaks(cleaned, sampling_rate=fs, method="neurokit", correct_artifacts=False)
    return [int(i) for i in info["ECG_R_Peaks"]]


def xqrs_peaks(x: np.ndarray, fs: float) -> list[int]:
    from wfdb import processing

    detector = processing.XQRS(sig=x, fs=fs)
    detector.detect(verbose=False)
    inds = np.asarray(detector.qrs_inds, dtype=np.int64)
    if inds.size == 0:
        return []
    # XQRS marks the QRS on its filtered signal; wfdb's documented step moves each mark to the
    # signal's extremum within +-50 ms ("compare": the larger of the upward and downward peak).
    corrected = processing.correct_peaks(
        x, inds, search_radius=round(0.05 * fs), smooth_window_size=round(0.15 * fs), peak_dir="compare"
    )
    return sorted({int(i) for i in corrected})


def main() -> None:
    logging.disable(logging.CRITICAL)
    results = []
    with np.load(sys.argv[1]) as archive:
        rates = archive["fs"]
        signals = [archive[f"signal_{i}"].astype(np.float64) for i in range(rates.size)]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for x, fs in zip(signals, rates.tolist(), strict=True):
            result: dict[str, object] = {}
            seconds: dict[str, float] = {}
            for name, detect in (("neurokit2", neurokit2_peaks), ("xqrs", xqrs_peaks)):
                t0 = time.perf_counter()
                result[name] = detect(x, float(fs))
                seconds[name] = time.perf_counter() - t0
            result["seconds"] = seconds
            results.append(result)
    from importlib.metadata import version

    versions = {name: version(name) for name in ("neurokit2", "wfdb", "numpy", "scipy")}
    print(json.dumps({"versions": versions, "results": results}))


if __name__ == "__main__":
    main()
