"""Run anjana's k-anonymity on a per-patient table; executed by .venv-checkers/bin/python.

Usage: anjana_runner.py TABLE.csv HIERARCHIES.json K SUPP_LEVEL_PERCENT  -> JSON on stdout (last line).
       anjana_runner.py --batch JOBS.json  -> JSON list on stdout (last line), one result per job
       (a job: {"rows": [[rid, age, sex, zip], ...], "hierarchies": {...}, "k": K, "supp": PERCENT}).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time

import pandas as pd
from anjana.anonymity import _k_anonymity as ak
from pycanon import anonymity


def _hierarchies(raw_h: dict) -> dict:
    return {
        qi: {int(lv): pd.Series(vals, dtype=(int if qi == "age" and lv == "0" else str)) for lv, vals in levels.items()}
        for qi, levels in raw_h.items()
    }


def run_job(df: pd.DataFrame, raw_h: dict, k: int, supp: float) -> dict:
    qis = list(raw_h)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # anjana prints progress
        anon, _supp_records, gen_level = ak.k_anonymity_inner(df, [], qis, k, supp, _hierarchies(raw_h))
    elapsed = time.perf_counter() - t0
    kept = [int(r) for r in anon["rid"].tolist()] if len(anon) else []
    return {
        "seconds": elapsed,
        "kept": kept,
        "gen_level": {q: int(v) for q, v in gen_level.items()},
        "k": int(anonymity.k_anonymity(anon, qis)) if len(anon) else 0,
    }


def batch(path: str) -> None:
    with open(path, encoding="utf-8") as fh:
        jobs = json.load(fh)
    out = []
    for job in jobs:
        df = pd.DataFrame(job["rows"], columns=["rid", "age", "sex", "zip"]).astype(
            {"rid": int, "age": int, "sex": str, "zip": str}
        )
        try:
            out.append(run_job(df, job["hierarchies"], int(job["k"]), float(job["supp"])))
        except Exception as exc:  # noqa: BLE001 - report per job (e.g. k above the table size)
            out.append({"error": f"{type(exc).__name__}: {exc}"})
    print(json.dumps(out))


def main() -> None:
    if sys.argv[1] == "--batch":
        batch(sys.argv[2])
        return
    table, hier_path, k, supp = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    df = pd.read_csv(table, dtype={"zip": str, "sex": str, "rid": int, "age": int})
    with open(hier_path, encoding="utf-8") as fh:
        raw_h = json.load(fh)
    qis = list(raw_h)
    hierarchies = {
        qi: {int(lv): pd.Series(vals, dtype=(int if qi == "age" and lv == "0" else str)) for lv, vals in levels.items()}
        for qi, levels in raw_h.items()
    }
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # anjana prints progress
        anon, supp_records, gen_level = ak.k_anonymity_inner(df, [], qis, k, supp, hierarchies)
    elapsed = time.perf_counter() - t0
    kept = [int(r) for r in anon["rid"].tolist()] if len(anon) else []
    k_real = int(anonymity.k_anonymity(anon, qis)) if len(anon) else 0
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "kept": kept,
                "gen_level": {q: int(v) for q, v in gen_level.items()},
                "supp_records": int(supp_records) if len(anon) else len(df),
                "k": k_real,
            }
        )
    )


if __name__ == "__main__":
    main()
