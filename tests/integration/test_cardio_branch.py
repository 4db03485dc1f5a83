"""End to end, the second output: simulator -> Kafka -> job (mini cluster) -> ecg-anomalies and
ecg-model-updates.

12 devices x 210 s of synthetic frames (a pool of base heart rates, 58..125 bpm); three devices carry
labelled episodes, and one of them joins 90 s late. The job must publish:

- anomaly events for exactly those three pids, during their episodes (precision/recall printed), and
  exactly the events of the reference model (testkit.branch_model.run_branch: same frames, same pure
  core, in event-time order) -- same ids, same bytes;
- local updates of every device and global updates with increasing rounds, equal to the reference;
- z-score events from the device whose own baseline is warm when its tachycardia starts (dev-0007:
  five clean windows first), all of them during an episode;
- the late device scores its first windows with the global prior: its first event carries a z-score
  and names the global round its join time selects, where a local-only detector would still be
  "cold" (no z-score). The prior's spread is the population's (between devices), so its z-score
  stays below the threshold: the absolute limit reports the bradycardia.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from devstack.simulator import Episode, SimConfig, generate_messages, ground_truth, produce
from federated.rounds import RoundClock
from privacy.pseudonym import pseudonymize
from testkit.jobs import TEST_SECRET, JobProcess, wait_until
from testkit.reference import expected_branch
from testkit.scoring import score_events, score_table
from tests.integration.support import IsolatedRun

START_MS = 1_763_812_800_000
ROUND_ARGS = ("--model-update-seconds", "30", "--model-grace-seconds", "5")
CLOCK = RoundClock(30_000, 5_000)
EPISODES = (
    Episode("dev-0003", "noise", 40, 10),
    Episode("dev-0003", "tachycardia", 120, 60),
    Episode("dev-0003", "asystole", 190, 7),
    Episode("dev-0012", "bradycardia", 150, 50),
    Episode("dev-0007", "tachycardia", 150, 60),  # warm on its own baseline by then: z-score events
)
LATE_DEVICE, LATE_JOIN_S = "dev-0012", 90


def test_anomalies_and_model_updates(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    run, stack = isolated_run, isolated_run.stack
    config = SimConfig(patients=12, duration_s=210, start_ms=START_MS, sites=2, end_of_stream=True, partitions=4,
                       seed=21, synthetic=True, episodes=EPISODES, joins=((LATE_DEVICE, LATE_JOIN_S),))
    messages = list(generate_messages(config))
    truth = ground_truth(config)
    args = run.job_args("--k-anonymity", "3", *ROUND_ARGS)
    expected = expected_branch(messages, args)
    expected_anomalies = {e.event_id: json.loads(e.to_json()) for e in expected.anomalies}
    expected_updates = {u.update_id: json.loads(u.to_json()) for u in [*expected.local_updates,
                                                                         *expected.global_updates]}
    assert produce(messages, stack.kafka_bootstrap, run.raw_topic).errors == 0

    job = JobProcess(args, tmp_path / "job.log")
    try:
        wait_until(lambda: len({a["event_id"] for a in run.anomalies()}) >= len(expected_anomalies)
                   and len({u["update_id"] for u in run.model_updates()}) >= len(expected_updates),
                   240, "all anomalies and model updates", job=job, poll=3.0)
        time.sleep(4)  # two checkpoint intervals: nothing else may arrive
        anomalies, updates = run.anomalies(), run.model_updates()
    finally:
        job.stop()

    # Exactly the reference model's messages (ids and bytes); duplicates only as exact replays.
    assert {a["event_id"]: a for a in anomalies} == expected_anomalies
    assert {u["update_id"]: u for u in updates} == expected_updates
    assert len(anomalies) == len(expected_anomalies) and len(updates) == len(expected_updates)

    # Anomalies for exactly the three pids with episodes, during their episodes.
    scores = score_events(anomalies, truth)
    print("\n" + score_table(scores))
    episode_pids = {pseudonymize(t["patient_id"], TEST_SECRET.encode(), scope=t["site"]) for t in truth}
    assert {a["pid"] for a in anomalies} == episode_pids
    for kind in ("tachycardia", "bradycardia", "asystole", "noise"):
        assert scores[kind].recall == 1.0 and scores[kind].precision == 1.0, scores[kind]
    assert scores["hr_zscore_30s"].events >= 1 and scores["hr_zscore_30s"].precision == 1.0, scores["hr_zscore_30s"]
    warm_device = next(t for t in truth if t["device_id"] == "dev-0007")
    warm_pid = pseudonymize(warm_device["patient_id"], TEST_SECRET.encode(), scope=warm_device["site"])
    assert any(a["kind"] == "hr_zscore_30s" and a["pid"] == warm_pid for a in anomalies)

    # Local updates from all 12 devices, global rounds increasing and averaging several clients.
    local = [u for u in updates if u["kind"] == "local"]
    global_updates = sorted((u for u in updates if u["kind"] == "global"), key=lambda u: u["round"])
    assert len({u["pid"] for u in local}) == 12
    assert [u["round"] for u in global_updates] == sorted({u["round"] for u in global_updates})
    assert max(u["clients"] for u in global_updates) >= 11
    rounds = [u["round"] - CLOCK.round_of(START_MS) for u in global_updates]
    print(f"local updates {len(local)}, global rounds {rounds}")

    # The late device started from the global round its join time names, and scored with it.
    late = next(t for t in truth if t["device_id"] == LATE_DEVICE)
    late_pid = pseudonymize(late["patient_id"], TEST_SECRET.encode(), scope=late["site"])
    prior_round = CLOCK.prior_round(START_MS + LATE_JOIN_S * 1000)
    prior = next(u for u in global_updates if u["round"] == prior_round)
    assert prior["weights"] is not None and prior["clients"] >= 10
    assert {u["prior_round"] for u in local if u["pid"] == late_pid} == {prior_round}
    late_events = sorted((a for a in anomalies if a["pid"] == late_pid), key=lambda a: a["window_start"])
    first = late_events[0]
    own_windows = int(first["model_version"].rsplit("+w", 1)[1])
    assert first["model_version"].startswith(f"global-{prior_round}+w") and own_windows < 4, first
    assert first["z_score"] is not None, first  # scored against the prior before its own warm-up
    print("late device's first event:", first)
    print("anomalies by kind:", dict(Counter(a["kind"] for a in anomalies)))
