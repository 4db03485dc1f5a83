"""Independent check: pycanon (own virtualenv, see scripts/setup_checkers.sh) measures k (and l)
of the published per-patient table of a 1,000-patient window."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from hierarchy import load_hierarchy
from privacy.kanonymity import AnonymizationConfig, anonymize_window
from testkit.privacy_workload import make_population, make_window

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKERS_PY = REPO_ROOT / ".venv-checkers" / "bin" / "python"

PYCANON_SCRIPT = r"""
import json, sys
import pandas as pd
from pycanon import anonymity
df = pd.read_csv(sys.argv[1], dtype=str, keep_default_na=False)
qi = ["level", "age", "sex", "zip"]
out = {"rows": len(df), "k": int(anonymity.k_anonymity(df, qi))}
if "sensitive" in df.columns:
    d = df[df["sensitive"] != ""].reset_index(drop=True)  # pycanon indexes positionally
    out["l"] = int(anonymity.l_diversity(d, qi, ["sensitive"])) if len(d) else 0
print(json.dumps(out))
"""


def checkers_python() -> Path:
    if not CHECKERS_PY.exists():
        pytest.fail(
            f"{CHECKERS_PY} is missing: run scripts/setup_checkers.sh to create .venv-checkers "
            "(pycanon/anjana pin an older numpy, so they live in their own virtualenv)"
        )
    return CHECKERS_PY


def run_pycanon(csv_path: Path) -> dict[str, int]:
    proc = subprocess.run(
        [str(checkers_python()), "-c", PYCANON_SCRIPT, str(csv_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("k", "l_div"), [(5, 0), (10, 2)])
def test_pycanon_confirms_k(tmp_path: Path, k: int, l_div: int) -> None:
    py = checkers_python()
    assert py.exists()
    pop = make_population(1000, seed=11)
    frames = make_window(pop, frames_per_patient=5, samples_per_frame=50, seed=11)
    sens = dict(zip(pop.pids, pop.sensitive, strict=True))
    res = anonymize_window(frames, None, AnonymizationConfig(load_hierarchy(), k, l_diversity=l_div), 0)
    table = res.patient_table()
    assert len(table) == 1000
    published = [r for r in table if r.level < 9]  # level 9 is suppression, not a class
    assert len(published) >= 900, res.metrics.log_line()
    path = tmp_path / "published.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["level", "age", "sex", "zip", "sensitive"])
        for r in published:
            w.writerow([r.level, r.qi["age"], r.qi["sex"], r.qi["zip"], sens[r.pid] or ""])
    got = run_pycanon(path)
    assert got["rows"] == len(published)
    assert got["k"] >= k, got
    if l_div:
        assert got["l"] >= l_div, got
