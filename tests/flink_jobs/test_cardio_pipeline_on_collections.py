"""The cardio job's operators (flink_jobs.cardio_job.build_cardio_pipeline) on collections in a local PyFlink
mini cluster, checked against the pure reference (testkit.branch_model.run_branch via testkit.reference
.expected_branch): every anomaly event and every local and global model update, by id and content. No Kafka, no
InfluxDB. What the collection cannot do is feed the job's global updates back to it through ecg-model-updates:
the reference model's global updates are given as that input instead (the loop through Kafka, restores and the
InfluxDB statistics stay in tests/integration/test_cardio_branch.py and its neighbours)."""

from __future__ import annotations

import json
import time

import pytest

from devstack.simulator import Episode, SimConfig, generate_messages
from federated.rounds import RoundClock
from testkit.pipeline import records_of, run_cardio_pipeline
from testkit.reference import expected_branch

# As in test_pipeline_on_collections.py: Beam's gRPC reader thread raises CANCELLED when the finished job hangs up.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")

START_MS = 1_763_812_800_000
ARGS = ("--model-update-seconds", "30", "--model-grace-seconds", "5")
CLOCK = RoundClock(30_000, 5_000)
LATE_DEVICE, LATE_JOIN_S = "dev-0005", 60


def test_anomalies_and_model_updates_are_the_reference_models() -> None:
    config = SimConfig(patients=6, duration_s=130, start_ms=START_MS, sites=2, end_of_stream=True, partitions=4,
                       seed=21, synthetic=True, bad_fraction=0.02,
                       episodes=(Episode("dev-0002", "tachycardia", 70, 40),
                                 Episode("dev-0005", "bradycardia", 90, 30)),
                       joins=((LATE_DEVICE, LATE_JOIN_S),))
    messages = list(generate_messages(config))
    expected = expected_branch(messages, ARGS)
    expected_anomalies = {event.event_id: json.loads(event.to_json()) for event in expected.anomalies}
    expected_updates = {update.update_id: json.loads(update.to_json())
                        for update in [*expected.local_updates, *expected.global_updates]}
    # Controls: there is something to get wrong (events of both episodes, several rounds, a device on a prior).
    assert len({event.pid for event in expected.anomalies}) == 2
    assert len(expected.global_updates) >= 3
    assert any(update.prior_round is not None for update in expected.local_updates)

    started = time.monotonic()
    output = run_cardio_pipeline(records_of(messages),
                                 [update.to_json() for update in expected.global_updates], ARGS)
    seconds = time.monotonic() - started

    assert {event["event_id"]: event for event in output.anomalies} == expected_anomalies
    assert len(output.anomalies) == len(expected_anomalies)
    published = output.model_updates
    assert {update["update_id"]: update for update in published} == expected_updates
    assert len(published) == len(expected_updates)
    # Its parse step rejects what the anonymization job rejects (that job's DLQ carries them; this one drops them).
    assert len(output.dead_letters) == sum(message.kind == "bad" for message in messages) > 0
    print(f"cardio pipeline on a collection: {len(output.anomalies)} anomalies, {len(published)} model updates, "
          f"{seconds:.1f} s")
