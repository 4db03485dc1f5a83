"""Can a reader see part of ONE InfluxDB 1.x write request? (issue 20, item 4: the class of 4 pseudonyms, k = 5,
that a reader saw during a broker outage.)

    .venv/bin/python -m benchmarks.influx_read_isolation [--windows 60] [--classes 4] [--k 5]

No job: an influxd of its own, one writer that sends, per 5 s window, `--classes` classes of k pseudonyms x
1,799 points (5 s at 360 Hz), each class ONE request, one request at a time (as the sink's whole-class
requests; the same series every window, as a ward's pseudonyms keep theirs), while a reader runs the tests'
k check (`testkit.readers.visible_classes_below_k`) in a loop. Every request holds a whole class of k, so
any class the reader sees below k is part of one request that was being applied.

Printed: requests, reader queries, sightings of a class below k (and the first few), and what the check
says after the last write (always nothing: every class is whole once its request is applied).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path

from devstack.influx_queries import create_database_v1, write_v1
from devstack.stack import LocalStack
from testkit.readers import visible_classes_below_k

WINDOW_NS = 5_000_000_000
SAMPLE_NS = 2_777_778  # 360 Hz
START_NS = 1_763_812_800_000_000_000


def class_request(window: int, klass: int, k: int) -> list[str]:
    start = START_NS + window * WINDOW_NS
    return [
        f"ecg_anonymized,age=c{klass},level=7,pid=p{klass}-{member},sex=*,zip=* ecg_mv={member}.5,imputed=false "
        f"{start + sample * SAMPLE_NS}"
        for member in range(k) for sample in range(WINDOW_NS // SAMPLE_NS)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=60)
    parser.add_argument("--classes", type=int, default=4, help="classes (requests) per window")
    parser.add_argument("--k", type=int, default=5, help="pseudonyms per class")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="influx-isolation-") as workdir:
        stack = LocalStack(Path(workdir) / "stack")
        stack.start(kafka=False, influx_v1=True, victoria_metrics=False)
        try:
            url, db = stack.influx_v1_url, "isolation"
            create_database_v1(url, db)
            done = threading.Event()
            sightings: list[str] = []
            queries = sighted = 0

            def reader() -> None:
                nonlocal queries, sighted
                while not done.is_set():
                    seen = visible_classes_below_k(url, db, args.k)
                    queries += 1
                    sighted += bool(seen)
                    sightings.extend(seen)

            thread = threading.Thread(target=reader, name="reader")
            thread.start()
            try:
                for window in range(args.windows):
                    for klass in range(args.classes):
                        write_v1(url, db, class_request(window, klass, args.k))
            finally:
                done.set()
                thread.join()
            after = visible_classes_below_k(url, db, args.k)
        finally:
            stack.stop()
    requests = args.windows * args.classes
    print(f"requests {requests} (each one whole class of {args.k} pseudonyms x {WINDOW_NS // SAMPLE_NS} points, "
          f"one at a time); reader queries {queries}; queries that saw a class below k: "
          f"{sighted} ({100 * sighted / max(queries, 1):.1f} %); below k after the last write: "
          f"{after or 'none'}")
    for sighting in sightings[:5]:
        print(f"  {sighting}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
