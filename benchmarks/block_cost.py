"""What the cardio branch's pure core costs per frame by block length (CARDIO_BLOCK_SECONDS, issue 24), no Flink:
the reference model (testkit.branch_model.run_branch, the job's DeviceProcessor.on_frames over the blocks the job
forms) on synthetic devices of MIT-BIH record 208: CPU time per frame, and the anomalies and local updates.

    .venv/bin/python -m benchmarks.block_cost [--devices 40] [--seconds 120] [--blocks 1,5,10] [--repeat 2]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from anomaly.beats import CardioBeats
from benchmarks.anomaly_evaluation import frames_of, scenario
from connectors.config import load_settings
from flink_jobs.cardio_branch import device_config
from testkit.branch_model import run_branch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--blocks", default="1,5,10", help="block lengths in seconds")
    parser.add_argument("--repeat", type=int, default=2, help="runs per block length (the fastest counts)")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    frames = frames_of(scenario(args.devices, args.seconds, True, args.seed))
    base = device_config(load_settings(["--demo-mode", "true"]))
    print(f"{args.devices} devices x {args.seconds} s of MIT-BIH 208, {len(frames)} frames")
    print("block s  ms/frame  anomalies  local updates")
    for block_s in [int(value) for value in args.blocks.split(",")]:
        config = replace(base, block_ms=block_s * 1000)
        best = float("inf")
        for _ in range(args.repeat):
            started = time.process_time()
            run = run_branch(frames, config, CardioBeats())
            best = min(best, time.process_time() - started)
        print(f"{block_s:7}  {1000 * best / len(frames):8.3f}  {len(run.anomalies):9}  {len(run.local_updates):13}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
