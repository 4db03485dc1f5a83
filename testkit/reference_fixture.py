"""(Re)generate the committed reference beats of MIT-BIH record 208 used by tests/cardio.

Runs neurokit2 and wfdb XQRS (in .venv-refs, see scripts/setup_refs.sh) on the whole 5-minute
record and writes their R-peak sample indices and their consensus (beats both place within 50 ms)
to tests/cardio/data/record208_reference_beats.json. ``--check`` compares instead of writing (exit 1
on a difference); tests/cardio/test_record208.py does the same check in every default test run.

    .venv/bin/python -m testkit.reference_fixture [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from connectors.jars import sha256_file
from devstack.ecg_data import MITBIH_FS_HZ, ensure_ecg_dat, load_mitbih_208
from testkit.cardio_evaluation import consensus
from testkit.reference_detectors import run_references

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "cardio" / "data" / "record208_reference_beats.json"


def compute() -> dict[str, Any]:
    path = ensure_ecg_dat()
    signal = load_mitbih_208(path)
    results, versions = run_references([signal], [float(MITBIH_FS_HZ)])
    peaks = results[0].peaks
    to_ms = 1000.0 / MITBIH_FS_HZ
    agreed_ms, disputed_ms = consensus(peaks["neurokit2"] * to_ms, peaks["xqrs"] * to_ms)
    return {
        "record": "MIT-BIH Arrhythmia Database record 208, lead MLII, first 300 s (scipy 1.14.1 misc/ecg.dat)",
        "ecg_dat_sha256": sha256_file(path),
        "fs": MITBIH_FS_HZ,
        "versions": versions,
        "tolerance_ms": 50.0,
        "neurokit2": peaks["neurokit2"].tolist(),
        "xqrs": peaks["xqrs"].tolist(),
        # Consensus beat positions in samples (midpoint of the two references' marks).
        "consensus": [round(float(v), 1) for v in np.asarray(agreed_ms) / to_ms],
        "disputed": [round(float(v), 1) for v in np.asarray(disputed_ms) / to_ms],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed fixture, write nothing")
    args = parser.parse_args(argv)
    fresh = compute()
    if args.check:
        stored = json.loads(FIXTURE.read_text(encoding="utf-8"))
        keys = ("neurokit2", "xqrs", "consensus", "disputed", "ecg_dat_sha256")
        diff = [k for k in keys if stored.get(k) != fresh[k]]
        print(f"{FIXTURE.relative_to(ROOT)}: {'differs in ' + ', '.join(diff) if diff else 'up to date'}")
        return 1 if diff else 0
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(fresh, separators=(",", ":")) + "\n", encoding="utf-8")
    print(
        f"wrote {FIXTURE.relative_to(ROOT)}: neurokit2 {len(fresh['neurokit2'])}, xqrs {len(fresh['xqrs'])}, "
        f"consensus {len(fresh['consensus'])}, disputed {len(fresh['disputed'])} beats"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
