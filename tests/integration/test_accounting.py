"""Accounting invariant, read from the job's Flink metrics over REST (what the web UI shows):

    input records   = control + dead-lettered + valid
    valid frames    = windowed + late
    windowed frames = anonymized + pending (frames in open windows; 0 once the stream has ended)
    per window      : anonymized = published + suppressed (no violation counted)
    valid frames    = frames into the cardio branch (its own job, same input: each exactly once;
                      out-of-order ones counted there)

and each term checked against what was really sent: bad messages, late frames, the reference model.
"""

from __future__ import annotations

import json
from pathlib import Path

from devstack.processes import free_port
from devstack.simulator import SimConfig, generate_messages, make_producer, produce
from testkit.flink_rest import job_metrics, running_job_id
from testkit.jobs import JobProcess, wait_until
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun, accounting_errors

START_MS = 1_763_812_800_000
K = 5
LATE_FRAMES = 7


def test_every_input_record_is_accounted_for(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    run, local_stack = isolated_run, isolated_run.stack
    messages = list(generate_messages(SimConfig(patients=16, duration_s=30, start_ms=START_MS, sites=2,
                                                bad_fraction=0.05, end_of_stream=True, partitions=4, seed=5)))
    frames = [m for m in messages if m.kind == "frame"]
    bad = [m for m in messages if m.kind == "bad"]
    control = [m for m in messages if m.kind == "control"]
    expected = expected_output(messages, k=K)
    produce(messages, local_stack.kafka_bootstrap, run.raw_topic)

    port, cardio_port = free_port(), free_port()
    job = JobProcess(run.job_args("--k-anonymity", str(K), "--web-ui-port", str(port),
                                  "--cardio-web-ui-port", str(cardio_port)), tmp_path / "job.log")
    try:
        total_in = len(messages) + LATE_FRAMES
        wait_until(lambda: run.points() >= expected.points, 240, "all points", job=job)
        # The job has passed end-of-stream, so its watermark is far in the future: re-sent frames are late.
        producer = make_producer(local_stack.kafka_bootstrap)
        for message in frames[:LATE_FRAMES]:
            producer.send(run.raw_topic, value=message.value, key=message.key, timestamp_ms=message.timestamp_ms)
        producer.flush()
        producer.close()
        seen: dict[str, float] = {}

        def all_records_counted() -> bool:
            seen.clear()
            seen.update(job_metrics(port))
            # The branch is its own job (own parse step): only its cardio_* counters join the sums. It runs at a
            # lower priority (CARDIO_NICE), so it may still be starting when the output is complete.
            if running_job_id(cardio_port) is None:
                return False
            seen.update({name: value for name, value in job_metrics(cardio_port).items()
                         if name.startswith("cardio_")})
            return (seen.get("records_in") == total_in and seen.get("late_records") == LATE_FRAMES
                    and seen.get("cardio_frames_in") == seen.get("frames_valid"))

        try:
            wait_until(all_records_counted, 120, "metrics of all records", job=job)
        except AssertionError as error:
            raise AssertionError(f"{error}; metrics {seen}, expected records_in {total_in}") from None
        metrics = dict(seen)
        assert accounting_errors(metrics) == []
        assert metrics["frames_pending"] == 0
        # The cardio branch gets every valid frame exactly once; the re-sent (late) frames are older
        # than what their devices already processed, so the branch counts them out of order.
        assert metrics["cardio_frames_in"] == metrics["frames_valid"]
        assert metrics["cardio_frames_out_of_order"] == LATE_FRAMES
        assert metrics["windows"] == expected.windows
        # Each term against what was really sent.
        assert metrics["control_records"] == len(control)
        assert metrics["dead_lettered"] == len(bad)
        assert metrics["frames_valid"] == len(frames) + LATE_FRAMES
        assert metrics["samples_published"] + metrics["samples_imputed"] == expected.points
        dead_letters = [json.loads(r.value) for r in run.dead_letters()]
        assert len(dead_letters) == len(bad) + LATE_FRAMES
        assert sum(1 for d in dead_letters if d["reason"] == "late") == LATE_FRAMES
    finally:
        job.stop()
