"""Where a Flink job's Python process spends its samples, by stage: py-spy raw (collapsed) profiles as written by
`benchmarks.throughput --py-spy DIR`, one line per file.

    .venv/bin/python -m benchmarks.profile_stages DIR/*cardio_job*.txt

py-spy samples every thread, idle ones too: a sample whose top frame is a gRPC or thread wait (Beam's channel
spin and server threads, queue and socket reads) is counted as waiting, not as work; the shares are of the busy
samples. Each busy sample goes to the first stage whose files are on its stack: the detector (anomaly/, cardio/,
federated/, operators/anomaly_models.py), parsing (operators/parse.py, contract/, privacy/), element coding
(Beam coders, pickling, PyFlink's Row) and the rest of PyFlink / Beam / gRPC (per-bundle and per-element work).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

WAITING = "waiting (gRPC / idle threads)"
WAIT_TOPS = ("channel_spin (grpc", "_serve (grpc", "run (threading.py", "wait (threading.py", "readinto (socket.py",
             "consume_request_iterator (grpc", "__enter__ (threading.py", "_blocking (grpc", "get (queue.py",
             "_wait_once (grpc", "_next (grpc")
STAGES = (
    ("detector", ("anomaly/", "cardio/", "federated/", "operators/anomaly_models")),
    ("parse", ("operators/parse", "contract/", "privacy/", "operators/records")),
    ("element coding", ("coder", "pickle", "Pickle", "pyflink/common/types")),
    ("other PyFlink / Beam / gRPC", ("pyflink", "apache_beam", "grpc")),
)


def stage_samples(collapsed: Path) -> Counter[str]:
    samples: Counter[str] = Counter()
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        top = stack.rsplit(";", 1)[-1]
        if top.startswith(WAIT_TOPS):
            samples[WAITING] += int(count)
        else:
            samples[next((name for name, files in STAGES if any(f in stack for f in files)), "other")] += int(count)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profiles", nargs="+", type=Path)
    args = parser.parse_args(argv)
    names = [name for name, _ in STAGES] + ["other"]
    print("| profile | samples | busy | " + " | ".join(f"{name} % of busy" for name in names) + " |")
    print("| --- | ---: | ---: | " + " | ".join("---:" for _ in names) + " |")
    for path in args.profiles:
        samples = stage_samples(path)
        total = sum(samples.values())
        busy = total - samples[WAITING]
        shares = " | ".join(f"{100 * samples[name] / busy:.1f} ({samples[name]})" if busy else "-" for name in names)
        print(f"| {path.name} | {total} | {busy} | {shares} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
