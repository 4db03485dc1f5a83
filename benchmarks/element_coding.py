"""What PyFlink's element coding costs per frame: the parse operator's output (`KeyedFrame`) crosses to
Java and back to the windows operator as a pickled object, encoded with cloudpickle
(`pyflink.fn_execution.coder_impl_fast.CloudPickleCoderImpl`). Compared with plain `pickle` (protocol 5),
the least a bytes or Row element type would still pay to carry the same frame.

    .venv/bin/python -m benchmarks.element_coding [--patients 50] [--duration 20]
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections.abc import Callable
from typing import Any

import cloudpickle

from benchmarks.throughput import HR_FRACTIONS, dataset
from connectors.config import PROJECT_ROOT
from contract.frames import EcgFrame, parse_frame
from hierarchy.loader import load_hierarchy
from operators.records import KeyedFrame, SourcePosition
from privacy.intake import IntakeOptions, to_core_frame
from privacy.model import Frame
from testkit.jobs import TEST_SECRET


def keyed_frames(patients: int, duration: int) -> list[KeyedFrame]:
    """The benchmark's data set as the parse operator emits it."""
    _, messages = dataset(patients, duration, sites=4, hr_fraction=HR_FRACTIONS["mixed"])  # as measured in docs
    options = IntakeOptions(TEST_SECRET.encode(), 32, load_hierarchy().quasi_identifiers)
    records = []
    for offset, message in enumerate(messages):
        parsed = parse_frame(message.value, message.timestamp_ms)
        if isinstance(parsed, EcgFrame):
            frame, _ = to_core_frame(parsed, options)
            assert isinstance(frame, Frame), frame
            records.append(KeyedFrame(parsed.group, frame, SourcePosition("ecg-raw", 0, offset)))
    return records


def per_frame_us(records: list[KeyedFrame], dumps: Callable[[Any], bytes],
                 loads: Callable[[bytes], Any]) -> tuple[float, float]:
    """(encode, decode) microseconds per frame, best of 3."""
    encode = decode = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        blobs = [dumps(record) for record in records]
        encode = min(encode, time.perf_counter() - started)
        started = time.perf_counter()
        for blob in blobs:
            loads(blob)
        decode = min(decode, time.perf_counter() - started)
    return encode / len(records) * 1e6, decode / len(records) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--duration", type=int, default=20)
    args = parser.parse_args(argv)
    records = keyed_frames(args.patients, args.duration)
    print(f"{len(records):,} frames of 250 samples; {len(cloudpickle.dumps(records[0])):,} bytes pickled each")
    print("| coding | encode us / frame | decode us / frame |")
    print("| --- | ---: | ---: |")
    for name, dumps, loads in (("cloudpickle (PyFlink's pickled elements)", cloudpickle.dumps, cloudpickle.loads),
                               ("pickle, protocol 5", lambda value: pickle.dumps(value, 5), pickle.loads)):
        encode, decode = per_frame_us(records, dumps, loads)
        print(f"| {name} | {encode:.1f} | {decode:.1f} |")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(PROJECT_ROOT))
    raise SystemExit(main())
