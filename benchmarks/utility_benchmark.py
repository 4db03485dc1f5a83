"""Utility and privacy on realistic wards: the core before/after issue 8, without anchors, anjana and
a global-recoding baseline; plus the optimality run against the exhaustive search.

Run from the repo root (after scripts/setup_checkers.sh for anjana; ~3.5 minutes on 2 cores):

    .venv/bin/python benchmarks/utility_benchmark.py [--quick] [--no-anjana]

Workloads: wards (one key each) of 10, 20, 40 and 200 patients per window from devstack.population
(census age pyramid x hospital rates, per-ward sex ratios, skewed zips), 5 s windows over 2 minutes
(24 windows), without churn (the same patients all along) and with churn (each patient present for
40-100 % of the run, some wards start late or stop early; about the same number present per window).
Every patient sends one frame per window. Figures per workload and k, summed over its wards:

* supp%   suppressed patient-windows / patient-windows (a patient-window = a patient's frames of one
          window, counted in the window of their timestamps; carried frames count where published)
* level   mean level per patient-window, suppressed = 9 (anjana: mean attribute level, see below)
* NCP     mean over patient-windows of privacy.metrics.ncp_table on each window's table (supp = 1)
* audit   groups (window of timestamp, level, labels) with < k distinct pseudonyms / all groups
* attack  min candidates over all prefixes and published patients (the cross-window attacker of
          testkit.privacy_audit), and the number of patients that ever had < k candidates

Methods: before = the bottom-up pass with carry-over (MAX_DELAY_WINDOWS=1, the old default), as in
testkit/naive_kanonymity.py, with the old default hierarchy (benchmarks/hierarchy_before_issue8.csv:
level 8 splits ages at 80); the others use --hierarchy (default: hierarchy/ecg_hierarchy.csv).
after = privacy.kanonymity.anonymize_window (optimal levels + anchors); no-anchor = the same
optimal levels per window with no cross-window rule; global = one level for the whole window (the
level with the fewest suppressed, then lowest NCP); anjana = anjana 1.2.3 global recoding per
window with its suppression limit set to the after-core's share in that window (its "level" = mean
per-attribute level, 0 = raw; audit/attack not applicable: its labels mix levels per attribute).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devstack.population import benchmark_ward, draw_population, ward_profile  # noqa: E402
from hierarchy.loader import STAR, Hierarchy, load_hierarchy  # noqa: E402
from privacy.kanonymity import (  # noqa: E402
    AnonymizationConfig,
    KeyState,
    anonymize_window,
    assign_levels,
    planning_problem,
    sorted_frames,
)
from privacy.metrics import ncp_table  # noqa: E402
from privacy.model import Frame  # noqa: E402
from privacy.planner import build_tree, plan_levels  # noqa: E402
from privacy.pseudonym import pseudonymize  # noqa: E402
from testkit.naive_kanonymity import naive_levels  # noqa: E402
from testkit.privacy_audit import auditor_violations, cross_window_attack_prefixes  # noqa: E402
from testkit.privacy_exhaustive import exhaustive_levels  # noqa: E402

CHECKERS_PY = ROOT / ".venv-checkers" / "bin" / "python"
# The default hierarchy before issue 8 (level 8 still split ages at 80); "before" always uses it.
BEFORE_HIERARCHY = ROOT / "benchmarks" / "hierarchy_before_issue8.csv"
RUNNER = ROOT / "benchmarks" / "anjana_runner.py"
SECRET = b"utility-benchmark-secret"
TOKEN_KEY = b"utility-benchmark-token-key"
WINDOW_MS = 5000
T0 = 1_763_812_800_000
Labels = tuple[str, ...]
Point = tuple[str, int, int, Labels]


@dataclass
class WardStream:
    key: str
    pids: list[str]
    qi: list[dict[str, object]]
    present: list[list[int]]  # per window: indices of the patients present


def ward_stream(seed: int, index: int, size: int, churn: bool, windows: int) -> WardStream:
    ward = benchmark_ward(seed, index, size, churn)
    pids = [pseudonymize(f"S{seed}-W{index}-N{size}-{i}", SECRET) for i in range(len(ward.patients))]
    qi: list[dict[str, object]] = [{"age": p.age, "sex": p.sex, "zip": p.zip} for p in ward.patients]
    spans = [p.stay.frames(windows) for p in ward.patients]
    present = [[i for i, (a, b) in enumerate(spans) if a <= w < b] for w in range(windows)]
    return WardStream(f"{ward.profile.name}-{index}", pids, qi, present)


@dataclass
class Outcome:
    """One method on one ward: per source window the level of each present patient, and the points."""

    levels: dict[int, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    attr_levels: dict[int, dict[int, dict[str, int]]] = field(default_factory=lambda: defaultdict(dict))
    points: list[Point] = field(default_factory=list)


def _ts(w: int, i: int) -> int:
    return T0 + w * WINDOW_MS + (i % 5) * 1000


def _labels(h: Hierarchy, qi: dict[str, object], level: int) -> Labels:
    return tuple(str(h.generalize(a, np.asarray([qi[a]], dtype=object), level)[0]) for a in h.quasi_identifiers)


def run_before(h: Hierarchy, s: WardStream, k: int, max_delay: int = 1) -> Outcome:
    """The old core: bottom-up levels, unplaced patients carried (with their own timestamps) into
    the next window up to ``max_delay`` times, then suppressed."""
    out = Outcome()
    carry: list[tuple[int, int, int]] = []  # (patient, source window, waited)
    for w, present in enumerate(s.present):
        entries = [*carry, *((i, w, 0) for i in present)]
        first: dict[int, tuple[int, int]] = {}  # patient -> (source window of its first frame, waited)
        for i, src, waited in sorted(entries, key=lambda e: (e[0], e[1])):
            if i not in first:
                first[i] = (src, waited)
            else:
                first[i] = (first[i][0], max(first[i][1], waited))
        levels = naive_levels(h, {str(i): s.qi[i] for i in first}, k)
        carry = []
        for i, src, waited in entries:
            lv = levels[str(i)]
            if lv == 9 and first[i][1] < max_delay:
                carry.append((i, src, waited + 1))
                continue
            out.levels[src][i] = lv
            if lv < 9:
                out.points.append((s.pids[i], _ts(src, i), lv, _labels(h, s.qi[i], lv)))
    for i, src, _ in carry:  # end of the run: what is still held is suppressed
        out.levels[src][i] = 9
    return out


def _frames(s: WardStream, w: int) -> list[Frame]:
    return [
        Frame(s.pids[i], _ts(w, i), 250.0, "II", np.zeros(2), 70.0, dict(s.qi[i]))
        for i in s.present[w]  # one small frame per patient and window: levels are what is measured
    ]


def run_after(h: Hierarchy, s: WardStream, k: int) -> Outcome:
    out = Outcome()
    cfg = AnonymizationConfig(h, k, token_key=TOKEN_KEY)
    index = {p: i for i, p in enumerate(s.pids)}
    state: KeyState | None = None
    for w in range(len(s.present)):
        res = anonymize_window(_frames(s, w), state, cfg, T0 + w * WINDOW_MS)
        state = res.state
        published = set()
        for pf in res.published:
            if pf.level < 9:
                i = index[pf.pid]
                published.add(i)
                out.levels[w][i] = pf.level
                out.points.append((pf.pid, pf.ts_ms, pf.level, tuple(pf.qi[a] for a in h.quasi_identifiers)))
        for i in s.present[w]:
            if i not in published:
                out.levels[w][i] = 9
    return out


def _table(h: Hierarchy, s: WardStream, idx: list[int]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for a in h.quasi_identifiers:
        vals = [s.qi[i][a] for i in idx]
        out[a] = np.asarray(vals, dtype=np.float64) if a == "age" else np.asarray(vals)
    return out


def run_per_window(h: Hierarchy, s: WardStream, k: int, method: str) -> Outcome:
    """Per-window methods without cross-window state: ``optimal`` (no anchors) or ``global``."""
    out = Outcome()
    for w, present in enumerate(s.present):
        if not present:
            continue
        table = _table(h, s, present)
        if method == "optimal":
            levels, _ = assign_levels(h, table, k)
            levels = np.where(levels == 0, 9, levels)
        else:
            levels = global_levels(h, table, k)
        for i, lv in zip(present, levels.tolist(), strict=True):
            out.levels[w][i] = lv
            if lv < 9:
                out.points.append((s.pids[i], _ts(w, i), lv, _labels(h, s.qi[i], lv)))
    return out


def global_levels(h: Hierarchy, table: dict[str, np.ndarray], k: int) -> np.ndarray:
    """One level for the whole window: fewest suppressed (classes < k), then lowest NCP."""
    tree = build_tree(h, table)
    best: tuple[int, float, int] | None = None
    best_levels = np.full(tree.n, 9)
    for lv in range(1, 9):
        codes = tree.node[lv - 1]
        ok = np.bincount(codes)[codes] >= k
        cost = float(tree.cost[lv - 1][codes][ok].sum())
        key = (int((~ok).sum()), cost, lv)
        if best is None or key < best:
            best = key
            best_levels = np.where(ok, lv, 9)
    return best_levels


def anjana_jobs(h: Hierarchy, s: WardStream, k: int, after: Outcome) -> list[dict[str, object]]:
    jobs: list[dict[str, object]] = []
    for w, present in enumerate(s.present):
        rows = [[i, int(s.qi[i]["age"]), str(s.qi[i]["sex"]), str(s.qi[i]["zip"])] for i in present]  # type: ignore[call-overload]
        hier: dict[str, dict[str, list[object]]] = {}
        for a in h.quasi_identifiers:
            uniq = np.unique(np.asarray([r[1 + h.quasi_identifiers.index(a)] for r in rows]))
            levels: dict[str, list[object]] = {"0": [v.item() for v in uniq]}
            for lv in range(1, 10):
                levels[str(lv)] = h.generalize(a, uniq, lv).astype(str).tolist()
            hier[a] = levels
        supp = 100.0 * sum(after.levels[w][i] == 9 for i in present) / max(1, len(present))
        jobs.append({"window": w, "rows": rows, "hierarchies": hier, "k": k, "supp": supp})
    return jobs


def run_anjana_batch(jobs: list[dict[str, object]]) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as td:
        path = Path(td) / "jobs.json"
        path.write_text(json.dumps([{key: j[key] for key in ("rows", "hierarchies", "k", "supp")} for j in jobs]))
        proc = subprocess.run(
            [str(CHECKERS_PY), str(RUNNER), "--batch", str(path)], capture_output=True, text=True, check=False
        )
    if proc.returncode != 0:
        raise RuntimeError(f"anjana runner failed: {proc.stderr[-2000:]}")
    result: list[dict[str, object]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def anjana_outcome(h: Hierarchy, s: WardStream, jobs: list[dict[str, object]], results: list[dict]) -> Outcome:
    out = Outcome()
    for job, res in zip(jobs, results, strict=True):
        w = int(job["window"])  # type: ignore[call-overload]
        kept = set(res.get("kept", []))
        gl = res.get("gen_level", {})
        for i in s.present[w]:
            if i in kept:
                out.attr_levels[w][i] = {a: int(gl.get(a, 0)) for a in h.quasi_identifiers}
                out.levels[w][i] = 0  # marker: per-attribute levels
            else:
                out.levels[w][i] = 9
    return out


@dataclass
class Summary:
    patient_windows: int = 0
    suppressed: int = 0
    level_sum: float = 0.0
    ncp_sum: float = 0.0
    audit_bad: int = 0
    audit_groups: int = 0
    attack_min: int | None = None
    attack_below: int = 0
    attack_done: bool = False

    def add(self, h: Hierarchy, s: WardStream, o: Outcome, k: int, attack: bool) -> None:
        qis = h.quasi_identifiers
        for w, lv_by_patient in o.levels.items():
            idx = sorted(lv_by_patient)
            if not idx:
                continue
            table = _table(h, s, idx)
            if o.attr_levels.get(w):
                per_attr = {
                    a: np.array([o.attr_levels[w][i][a] if lv_by_patient[i] != 9 else 9 for i in idx]) for a in qis
                }
                self.ncp_sum += ncp_table(h, table, per_attr) * len(idx)
                self.level_sum += float(sum(np.mean([per_attr[a][j] for a in qis]) for j in range(len(idx))))
            else:
                levels = np.array([lv_by_patient[i] for i in idx])
                self.ncp_sum += ncp_table(h, table, levels) * len(idx)
                self.level_sum += float(levels.sum())
            self.patient_windows += len(idx)
            self.suppressed += sum(lv_by_patient[i] == 9 for i in idx)
        if not attack:
            return
        self.attack_done = True
        groups = {(p[1] - p[1] % WINDOW_MS, p[2], p[3]) for p in o.points}
        self.audit_groups += len(groups)
        self.audit_bad += len(auditor_violations(h, o.points, WINDOW_MS, k))
        true_qi = {s.pids[i]: s.qi[i] for i in range(len(s.pids))}
        worst, below = cross_window_attack_prefixes(h, o.points, true_qi, k, WINDOW_MS)
        if any(p[2] < 9 for p in o.points):
            self.attack_min = worst if self.attack_min is None else min(self.attack_min, worst)
        self.attack_below += len({target for _, target, _ in below})

    def row(self) -> str:
        n = max(1, self.patient_windows)
        audit = f"{self.audit_bad}/{self.audit_groups}" if self.attack_done else "-"
        attack = f"{self.attack_min if self.attack_min is not None else '-'} / {self.attack_below}"
        return (
            f"{100.0 * self.suppressed / n:6.2f} {self.level_sum / n:6.2f} {self.ncp_sum / n:6.3f} "
            f"{audit:>9} {attack if self.attack_done else '-':>9}"
        )


METHODS = ("before", "after", "no-anchor", "global", "anjana")


def utility_tables(args: argparse.Namespace, h: Hierarchy) -> None:
    h_before = load_hierarchy(BEFORE_HIERARCHY)
    print(f"utility: {args.windows} windows of {WINDOW_MS // 1000} s; wards per workload: {args.wards} (200: 3)")
    header = (
        f"{'ward':>5} {'churn':>5} {'k':>3} {'method':<9} {'supp%':>6} {'level':>6} {'NCP':>6} "
        f"{'audit<k':>9} {'att min/#<k':>9}"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        for churn in (False, True):
            wards = args.wards if size < 200 else min(args.wards, 3)
            streams = [ward_stream(args.seed, i, size, churn, args.windows) for i in range(wards)]
            for k in args.ks:
                summaries = {m: Summary() for m in METHODS}
                jobs_all: list[tuple[WardStream, list[dict[str, object]]]] = []
                for s in streams:
                    after = run_after(h, s, k)
                    outcomes = {
                        "before": run_before(h_before, s, k),
                        "after": after,
                        "no-anchor": run_per_window(h, s, k, "optimal"),
                        "global": run_per_window(h, s, k, "global"),
                    }
                    for m, o in outcomes.items():
                        # Each method is measured with the hierarchy it published with.
                        summaries[m].add(h_before if m == "before" else h, s, o, k, attack=True)
                    if not args.no_anjana:
                        jobs_all.append((s, anjana_jobs(h, s, k, after)))
                if not args.no_anjana:
                    flat = [j for _, jobs in jobs_all for j in jobs]
                    results = run_anjana_batch(flat)
                    pos = 0
                    for s, jobs in jobs_all:
                        part = results[pos : pos + len(jobs)]
                        pos += len(jobs)
                        summaries["anjana"].add(h, s, anjana_outcome(h, s, jobs, part), k, attack=False)
                for m in METHODS:
                    if m == "anjana" and args.no_anjana:
                        continue
                    print(f"{size:>5} {'yes' if churn else 'no':>5} {k:>3} {m:<9} {summaries[m].row()}", flush=True)


def optimality(args: argparse.Namespace, h: Hierarchy) -> None:
    print()
    print("optimality vs the exhaustive search (windows of <= 12 patients per key):")
    rng = np.random.default_rng(args.seed)
    stats: dict[str, list[tuple[bool, float, float]]] = defaultdict(list)
    t0 = time.perf_counter()
    # Fresh windows: a ward profile, 2..12 patients, k in 2..5.
    for trial in range(args.fresh):
        n = int(rng.integers(2, 13))
        k = int(rng.choice([2, 3, 5]))
        people = draw_population(np.random.default_rng([args.seed, trial]), [trial % 6] * n, 6, False)
        table = {
            "age": np.array([p.age for p in people], dtype=np.float64),
            "sex": np.array([p.sex for p in people]),
            "zip": np.array([p.zip for p in people]),
        }
        tree = build_tree(h, table)
        anchors = np.zeros(n, dtype=np.int64)
        levels = plan_levels(tree, k, anchors, np.zeros(n, dtype=bool), n + 1.0)
        stats[f"fresh k={k}"].append(_compare(tree, levels, k, anchors, np.zeros(n, dtype=bool)))
    # Windows with history: churning wards of ~8 per window (<= 11 patients in all), 12 windows each.
    for trial in range(args.history_wards):
        k = int(rng.choice([2, 3, 5]))
        s = ward_stream(args.seed + 1000 + trial, trial % 6, 8, True, 12)
        cfg = AnonymizationConfig(h, k, token_key=TOKEN_KEY)
        state = KeyState()
        for w in range(12):
            frames = _frames(s, w)
            if state.anchors and frames:
                prob = planning_problem(sorted_frames(frames), state, cfg)
                # Same constraints for both: anchors (refined where the slack check allowed) and eligibility.
                levels = plan_levels(prob.tree, k, prob.entry_level, prob.eligible, prob.supp_cost)
                stats[f"history k={k}"].append(_compare(prob.tree, levels, k, prob.entry_level, prob.eligible))
            state = anonymize_window(frames, state, cfg, T0 + w * WINDOW_MS).state
    print(f"  ({time.perf_counter() - t0:.0f} s)")
    print(
        f"  {'windows':<14} {'count':>6} {'supp = opt':>11} {'mean NCP gap':>13} {'max NCP gap':>12} "
        f"{'NCP sum ratio':>14}"
    )
    for name in sorted(stats):
        rows = stats[name]
        equal = [r for r in rows if r[0]]
        gaps = [max(0.0, (a - b) / b) for _, a, b in equal if b > 0]  # clip float noise below 0
        ratio = sum(a for _, a, _ in equal) / max(1e-12, sum(b for _, _, b in equal))
        print(
            f"  {name:<14} {len(rows):>6} {100.0 * len(equal) / len(rows):>10.1f}% "
            f"{100.0 * (np.mean(gaps) if gaps else 0.0):>12.2f}% {100.0 * (max(gaps) if gaps else 0.0):>11.1f}% "
            f"{ratio:>14.4f}"
        )


def _compare(tree, levels: np.ndarray, k: int, anchors: np.ndarray, eligible: np.ndarray) -> tuple[bool, float, float]:
    """(same number suppressed as the optimum, planner NCP, optimum NCP) with NCP as ncp_table."""
    n = tree.n
    best, _ = exhaustive_levels(tree, k, n + 1.0, anchors, eligible)

    def ncp(lv: np.ndarray) -> float:
        total = sum(1.0 if x == 9 else float(tree.cost[x - 1][tree.node[x - 1][p]]) for p, x in enumerate(lv.tolist()))
        return total / n

    return bool((levels == 9).sum() == (best == 9).sum()), ncp(levels), ncp(best)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 40, 200])
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 2, 10])
    ap.add_argument("--wards", type=int, default=6, help="wards (keys) per workload (200-patient wards: at most 3)")
    ap.add_argument("--windows", type=int, default=24, help="5 s windows per run (24 = 2 minutes)")
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--fresh", type=int, default=3000, help="fresh windows in the optimality run")
    ap.add_argument("--history-wards", type=int, default=200, help="churning wards x 12 windows in the optimality run")
    ap.add_argument("--no-anjana", action="store_true")
    ap.add_argument("--skip-utility", action="store_true")
    ap.add_argument("--skip-optimality", action="store_true")
    ap.add_argument("--quick", action="store_true", help="small run for a smoke test")
    ap.add_argument("--hierarchy", type=Path, default=None, help="hierarchy CSV (default: hierarchy/ecg_hierarchy.csv)")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.ks, args.wards, args.windows, args.fresh, args.history_wards = [20], [5], 2, 8, 100, 5
    if not args.no_anjana and not CHECKERS_PY.exists():
        sys.exit(f"{CHECKERS_PY} missing: run scripts/setup_checkers.sh (or pass --no-anjana)")
    h = load_hierarchy() if args.hierarchy is None else load_hierarchy(args.hierarchy)
    print(f"hierarchy {h.path}")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, seed {args.seed}, star label {STAR!r}")
    print("ward profiles: " + ", ".join(ward_profile(i).name for i in range(args.wards)))
    t0 = time.perf_counter()
    if not args.skip_utility:
        utility_tables(args, h)
    if not args.skip_optimality:
        optimality(args, h)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
