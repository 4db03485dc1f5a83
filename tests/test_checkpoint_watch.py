"""testkit.checkpoint_watch: a restored checkpoint's times from the JobManager's log (the chaos driver's fallback
for a checkpoint that completed less than one REST poll before a kill -9)."""

from testkit.checkpoint_watch import logged_checkpoint_times

COORDINATOR = "INFO  org.apache.flink.runtime.checkpoint.CheckpointCoordinator    [] -"
TYPE = "(type=CheckpointType{name='Checkpoint', sharingFilesStrategy=FORWARD_BACKWARD})"
LOG = f"""\
2026-12-05 05:36:36,620 {COORDINATOR} Triggering checkpoint 3 \
{TYPE} @ 1796448996576 for job 0a51.
2026-12-05 05:36:37,001 {COORDINATOR} Triggering checkpoint 3 \
{TYPE} @ 1796448997000 for job ffff.
2026-12-05 05:36:51,204 {COORDINATOR} Completed checkpoint 3 \
for job 0a51 (10116672 bytes, checkpointDuration=14624 ms, finalizationTime=4 ms).
2026-12-05 05:36:51,231 {COORDINATOR} Triggering checkpoint 4 \
{TYPE} @ 1796449011220 for job 0a51.
"""


def test_trigger_and_completion_of_one_jobs_checkpoint() -> None:
    assert logged_checkpoint_times(LOG, "0a51", 3) == (1796448996576, 1796448996576 + 14624)


def test_a_checkpoint_not_completed_in_the_log_has_no_times() -> None:
    assert logged_checkpoint_times(LOG, "0a51", 4) is None
    assert logged_checkpoint_times(LOG, "ffff", 3) is None
