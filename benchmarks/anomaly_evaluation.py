"""Evaluation of the cardio branch against labelled episodes (simulator ground truth).

    .venv/bin/python -m benchmarks.anomaly_evaluation [--devices 24] [--seconds 900]
        [--mitbih] [--seed 3]

Runs the branch's pure core in event-time order (anomaly.pipeline.run_branch: the reference model the
end-to-end tests prove the job equal to) twice, with new devices starting from the global prior
(MODEL_GLOBAL_PRIOR=true) and local-only (false), and prints:

- precision / recall of anomaly events per kind (an event is true when it overlaps an episode of a
  matching kind on the same device; an episode is found when at least one such event overlaps it);
  the same restricted to devices that join late, where the prior matters;
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
from anomaly.pipeline import run_branch
from connectors.config import load_settings
from contract.frames import EcgFrame, parse_frame
from devstack.simulator import Episode, SimConfig, generate_messages, ground_truth
from federated.model import ar_predict
from flink_jobs.cardio_branch import device_config
from hierarchy.loader import load_hierarchy
from privacy.intake import IntakeOptions, to_core_frame
from privacy.pseudonym import pseudonymize
from tests.integration.support import TEST_SECRET, score_events, score_table

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
    args = parser.parse_args(argv)
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
