"""Evaluation of the cardio branch against labelled episodes (simulator ground truth).

    .venv/bin/python -m benchmarks.anomaly_evaluation [--devices 24] [--seconds 900]
        [--mitbih] [--seed 3]
    .venv/bin/python -m benchmarks.anomaly_evaluation --random-episodes [--devices 60] [--seconds 240]
        [--seed 5] [--png docs/anomaly_episodes.png]

Runs the branch's pure core in event-time order (testkit.branch_model.run_branch: the reference model the
end-to-end tests prove the job equal to) twice, with new devices starting from the global prior
(MODEL_GLOBAL_PRIOR=true) and local-only (false), and prints:

- precision / recall of anomaly events per kind (an event is true when it overlaps an episode of a
  matching kind on the same device; an episode is found when at least one such event overlaps it);
  the same restricted to devices that join late, where the prior matters;
- with --random-episodes: one tachycardia or bradycardia episode per device at a random offset and of a
  random length (10-60 s, so it falls anywhere relative to the 30 s windows), on MIT-BIH record 208
  (arrhythmic: premature beats, compensatory pauses) in frames without hr_bpm; precision and recall per
  kind and per episode length, the acceptance line (recall and precision >= 0.95 for episodes of 15 s or
  more), and optionally a plot;
- the global model's prediction accuracy, as FLEAD reports it: for every global round, its AR model
  predicts each device's next 30 s heart rate over the following round (centred on the device's own
  mean so far), against what the device then measured; beside it the naive "same as last window".
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from dataclasses import replace
from typing import Any

import numpy as np

from anomaly.beats import CardioBeats
from anomaly.detector import WINDOW_MS
from anomaly.device import FrameInput
from connectors.config import load_settings
from contract.frames import EcgFrame, parse_frame
from devstack.simulator import RATE_EPISODE_KINDS as RATE_KINDS
from devstack.simulator import Episode, SimConfig, generate_messages, ground_truth, random_rate_episodes
from federated.model import ar_predict
from flink_jobs.cardio_branch import device_config
from hierarchy.loader import load_hierarchy
from privacy.intake import IntakeOptions, to_core_frame
from privacy.pseudonym import pseudonymize
from testkit.branch_model import run_branch
from testkit.jobs import TEST_SECRET
from testkit.scoring import score_events, score_table

START_MS = 1_763_812_800_000


def scenario(devices: int, seconds: int, mitbih: bool, seed: int) -> SimConfig:
    """A third of the devices join late (evenly over the first half); every third device has an
    episode 90..150 s after its own start, kinds in turn."""
    rng = np.random.default_rng(seed)
    joins, episodes = [], []
    kinds = ("tachycardia", "bradycardia", "asystole", "noise")
    for number in range(1, devices + 1):
        device = f"dev-{number:04d}"
        join = 0.0 if number % 3 else float(round(rng.uniform(60, seconds / 2)))
        if join:
            joins.append((device, join))
        if number % 3 != 1:
            kind = kinds[(number // 3) % len(kinds)]
            start = join + float(round(rng.uniform(90, 150)))
            duration = 8.0 if kind == "asystole" else 60.0 if kind != "noise" else 20.0
            if start + duration < seconds:
                episodes.append(Episode(device, kind, start, duration))
    return SimConfig(patients=devices, duration_s=seconds, start_ms=START_MS, seed=seed, synthetic=not mitbih,
                     episodes=tuple(episodes), joins=tuple(joins))


LENGTH_BUCKETS = ((10, 15), (15, 30), (30, 61))


def evaluate_random_episodes(devices: int, seconds: int, seed: int, png: Any) -> int:
    config = random_rate_episodes(devices, seconds, seed, START_MS)
    truth = ground_truth(config)
    frames = frames_of(config)
    settings = load_settings([], environ={"PSEUDONYM_SECRET": TEST_SECRET})
    run = run_branch(frames, device_config(settings), CardioBeats())
    events = [json.loads(e.to_json()) for e in run.anomalies]
    print(f"{devices} devices x {seconds} s of MIT-BIH 208 without hr_bpm, one rate episode each "
          f"(10-60 s at random offsets), seed {seed}")
    print(score_table(score_events(events, truth)))
    rows = []
    print("\nkind          length    episodes  recall  events  precision")
    for kind in RATE_KINDS:
        for low, high in LENGTH_BUCKETS:
            bucket = [t for t in truth if t["kind"] == kind and low * 1000 <= t["end_ms"] - t["start_ms"] < high * 1000]
            score = score_events(events, bucket)[kind]
            # Precision within the bucket: events of this kind on the bucket's devices.
            pids = {pseudonymize(t["patient_id"], TEST_SECRET.encode(), scope=t["site"]) for t in bucket}
            own = [e for e in events if e["kind"] == kind and e["pid"] in pids]
            precision = score_events(own, bucket)[kind].precision
            rows.append({"kind": kind, "bucket": f"{low}-{min(high, 60)} s", "episodes": score.episodes,
                         "recall": score.recall, "events": len(own), "precision": precision})
            print(f"{kind:<13} {low:>2}-{min(high, 60):>2} s  {score.episodes:>8}  {score.recall:>6.2f}  "
                  f"{len(own):>6}  {precision:>9.2f}")
    ok = True
    for kind in RATE_KINDS:
        long_enough = [t for t in truth if t["kind"] == kind and t["end_ms"] - t["start_ms"] >= 15_000]
        score = score_events([e for e in events if e["kind"] == kind], long_enough)[kind]
        everything = score_events(events, [t for t in truth if t["kind"] == kind])[kind]
        met = score.recall >= 0.95 and everything.precision >= 0.95
        ok = ok and met
        print(f"{kind}: episodes >= 15 s: recall {score.recall:.3f} ({score.episodes_found}/{score.episodes}); "
              f"precision {everything.precision:.3f} ({everything.true_events}/{everything.events}) "
              f"(target >= 0.95 each: {'met' if met else 'MISSED'})")
    if png is not None:
        plot_buckets(rows, png, f"{devices} devices x {seconds} s, MIT-BIH 208 without hr_bpm, seed {seed}")
        print(f"plot: {png}")
    return 0 if ok else 1


def plot_buckets(rows: list[dict[str, Any]], path: Any, title: str) -> None:
    """Recall and precision per kind and episode length (matplotlib lives in .venv-refs)."""
    import subprocess

    from connectors.config import PROJECT_ROOT

    script = (
        "import json, sys; import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
        "rows = json.loads(sys.argv[1]); kinds = sorted({r['kind'] for r in rows}, reverse=True)\n"
        "f, axes = plt.subplots(1, len(kinds), figsize=(9, 3.4), sharey=True)\n"
        "for axis, kind in zip(axes, kinds):\n"
        "    own = [r for r in rows if r['kind'] == kind]; x = range(len(own))\n"
        "    axis.bar([i - 0.2 for i in x], [r['recall'] for r in own], 0.4, label='recall', color='#4c72b0')\n"
        "    axis.bar([i + 0.2 for i in x], [r['precision'] for r in own], 0.4, label='precision', color='#55a868')\n"
        "    axis.set_xticks(list(x), [r['bucket'] + chr(10) + str(r['episodes']) + ' episodes' for r in own])\n"
        "    axis.axhline(0.95, color='grey', linestyle='--', linewidth=1); axis.set_ylim(0, 1.05)\n"
        "    axis.set_title(kind, fontsize=10)\n"
        "axes[0].legend(loc='lower right', fontsize=8); f.suptitle(sys.argv[3], fontsize=9); f.tight_layout()\n"
        "f.savefig(sys.argv[2], dpi=110)\n"
    )
    clean = [{**row, "precision": 0.0 if math.isnan(row["precision"]) else row["precision"],
              "recall": 0.0 if math.isnan(row["recall"]) else row["recall"]} for row in rows]
    subprocess.run([str(PROJECT_ROOT / ".venv-refs" / "bin" / "python"), "-c", script, json.dumps(clean),
                    str(path), title], check=True)


def frames_of(config: SimConfig) -> list[FrameInput]:
    settings = load_settings([], environ={"PSEUDONYM_SECRET": TEST_SECRET})
    hierarchy = load_hierarchy(settings.path("hierarchy_path"))
    options = IntakeOptions(TEST_SECRET.encode(), 32, hierarchy.quasi_identifiers)
    frames = []
    for message in generate_messages(config):
        parsed = parse_frame(message.value, message.timestamp_ms)
        if isinstance(parsed, EcgFrame):
            frame, _ = to_core_frame(parsed, options)
            frames.append(FrameInput(frame.pid, frame.ts_ms, frame.fs, frame.samples))  # type: ignore[union-attr]
    return frames


def measured_windows(frames: list[FrameInput]) -> dict[str, dict[int, float]]:
    """Each device's 30 s window heart rates as its beats give them (all RR 200..3000 ms)."""
    source = CardioBeats()
    states: dict[str, Any] = {}
    beats: dict[str, list[int]] = {}
    for frame in sorted(frames, key=lambda f: f.ts_ms):
        states[frame.pid], out = source.feed(states.get(frame.pid), frame.ts_ms, frame.fs, frame.samples)
        beats.setdefault(frame.pid, []).extend(out.times_ms)
    windows: dict[str, dict[int, float]] = {}
    for pid, times in beats.items():
        rr: dict[int, list[int]] = {}
        for previous, beat in itertools.pairwise(times):
            if 200 <= beat - previous <= 3000:
                rr.setdefault(beat - beat % WINDOW_MS, []).append(beat - previous)
        windows[pid] = {start: 60000.0 / float(np.mean(v)) for start, v in rr.items() if len(v) >= 3}
    return windows


def prediction_accuracy(run: Any, windows: dict[str, dict[int, float]], update_ms: int) -> dict[str, float]:
    errors_global, errors_naive = [], []
    for update in run.global_updates:
        if update.weights is None:
            continue
        low, high = update.ts_ms, update.ts_ms + update_ms  # the round after it was published
        for series in windows.values():
            for start, actual in series.items():
                if not low <= start < high:
                    continue
                history = [series.get(start - WINDOW_MS * i) for i in (3, 2, 1)]
                if any(h is None for h in history):
                    continue
                past = [v for s, v in series.items() if s < start]
                mean = float(np.mean(past))
                errors_global.append(abs(ar_predict(update.weights.ar, history, mean) - actual))  # type: ignore[arg-type]
                errors_naive.append(abs(history[-1] - actual))  # type: ignore[operator]
    return {"windows": float(len(errors_global)),
            "mae_global": float(np.mean(errors_global)) if errors_global else math.nan,
            "mae_last_value": float(np.mean(errors_naive)) if errors_naive else math.nan}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=24)
    parser.add_argument("--seconds", type=int, default=900)
    parser.add_argument("--mitbih", action="store_true", help="MIT-BIH record 208 instead of synthetic ECG")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--random-episodes", action="store_true",
                        help="one tachycardia or bradycardia episode per device, random offset and length (10-60 s)")
    parser.add_argument("--png", default=None, help="with --random-episodes: write the plot here")
    args = parser.parse_args(argv)
    if args.random_episodes:
        return evaluate_random_episodes(args.devices, args.seconds, args.seed, args.png)
    config = scenario(args.devices, args.seconds, args.mitbih, args.seed)
    truth = ground_truth(config)
    frames = frames_of(config)
    settings = load_settings([], environ={"PSEUDONYM_SECRET": TEST_SECRET})
    base = device_config(settings)
    late_pids = {f.pid for f in frames if f.ts_ms > START_MS + 30_000 and f.ts_ms == min(
        g.ts_ms for g in frames if g.pid == f.pid)}
    print(f"{args.devices} devices x {args.seconds} s ({'MIT-BIH 208' if args.mitbih else 'synthetic'}), "
          f"{len(truth)} episodes, {len(late_pids)} late joiners, seed {args.seed}")
    for label, use_prior in (("global prior", True), ("local only", False)):
        run = run_branch(frames, replace(base, use_prior=use_prior), CardioBeats())
        events = [json.loads(e.to_json()) for e in run.anomalies]
        print(f"\n== {label}: all devices")
        print(score_table(score_events(events, truth)))
        late_truth = [t for t in truth
                      if pseudonymize(t["patient_id"], TEST_SECRET.encode(), scope=t["site"]) in late_pids]
        print(f"== {label}: late joiners only ({len(late_truth)} episodes)")
        print(score_table(score_events([e for e in events if e["pid"] in late_pids], late_truth)))
        if use_prior:
            accuracy = prediction_accuracy(run, measured_windows(frames), base.clock.update_ms)
            print(f"\nglobal model's next-30-s HR prediction over the following round: {accuracy['windows']:.0f} "
                  f"windows, MAE {accuracy['mae_global']:.2f} bpm (last-value baseline "
                  f"{accuracy['mae_last_value']:.2f} bpm); {len(run.global_updates)} global rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
