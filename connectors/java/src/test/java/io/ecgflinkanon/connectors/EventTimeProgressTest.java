package io.ecgflinkanon.connectors;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.runtime.watermarkstatus.WatermarkStatus;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/** EventTimeProgress driven through Flink's one-input operator harness (snapshot, restore, idleness). */
class EventTimeProgressTest {
    private static final long OUT_OF_ORDERNESS = 2_000;

    private static OneInputStreamOperatorTestHarness<Row, Row> opened(OperatorSubtaskState restoreFrom)
            throws Exception {
        return opened(restoreFrom, 0);
    }

    private static OneInputStreamOperatorTestHarness<Row, Row> opened(OperatorSubtaskState restoreFrom,
            long idleTimeoutMillis) throws Exception {
        return opened(restoreFrom, idleTimeoutMillis, 0);
    }

    private static OneInputStreamOperatorTestHarness<Row, Row> opened(OperatorSubtaskState restoreFrom,
            long idleTimeoutMillis, long idleAnnounceDelayMillis) throws Exception {
        return opened(new EventTimeProgress(OUT_OF_ORDERNESS, idleTimeoutMillis, idleAnnounceDelayMillis), restoreFrom);
    }

    private static OneInputStreamOperatorTestHarness<Row, Row> opened(EventTimeProgress operator,
            OperatorSubtaskState restoreFrom) throws Exception {
        return Harnesses.opened(new OneInputStreamOperatorTestHarness<>(operator), restoreFrom);
    }

    /** A checkpoint after partition 0 (t=10000) and partition 1 (t=12000) were read, watermark 5000 forwarded. */
    private static OperatorSubtaskState checkpointOfTwoPartitionsAtWatermark5000() throws Exception {
        try (OneInputStreamOperatorTestHarness<Row, Row> before = opened(null)) {
            before.processElement(record("ecg-raw", 0, 0, 10_000));
            before.processElement(record("ecg-raw", 1, 0, 12_000));
            before.processWatermark(5_000);
            return before.snapshot(1L, 1L);
        }
    }

    private static StreamRecord<Row> record(String topic, int partition, long offset, long timestamp) {
        return new StreamRecord<>(Row.of(topic, partition, offset, timestamp, new byte[] {1}), timestamp);
    }

    /** Watermarks and watermark statuses in the output, in order, as strings ("W5000", "IDLE", "ACTIVE"). */
    private static List<String> progressOf(OneInputStreamOperatorTestHarness<Row, Row> harness) {
        List<String> seen = new ArrayList<>();
        for (Object element : harness.getOutput()) {
            if (element instanceof Watermark) {
                seen.add("W" + ((Watermark) element).getTimestamp());
            } else if (element instanceof WatermarkStatus) {
                seen.add(((WatermarkStatus) element).isIdle() ? "IDLE" : "ACTIVE");
            }
        }
        return seen;
    }

    /** The source reports active and partition 0 delivers t=20000, then the watermark 17999. */
    private static void readsAgainUpTo17999(OneInputStreamOperatorTestHarness<Row, Row> harness) throws Exception {
        harness.processWatermarkStatus(WatermarkStatus.ACTIVE);
        harness.processElement(record("ecg-raw", 0, 1, 20_000));
        harness.processWatermark(17_999);
    }

    private static long recordsOut(OneInputStreamOperatorTestHarness<Row, Row> harness) {
        return harness.getOutput().stream().filter(element -> element instanceof StreamRecord).count();
    }

    @Test
    void forwardsRecordsAndRisingWatermarksUnchanged() throws Exception {
        try (OneInputStreamOperatorTestHarness<Row, Row> harness = opened(null)) {
            harness.processElement(record("ecg-raw", 0, 0, 10_000));
            harness.processWatermark(7_999);
            harness.processWatermark(7_000); // never backwards
            harness.processElement(record("ecg-raw", 1, 0, 12_000));
            harness.processWatermark(9_999);
            assertEquals(List.of("W7999", "W9999"), progressOf(harness));
            assertEquals(2, recordsOut(harness));
            StreamRecord<?> first = (StreamRecord<?>) harness.getOutput().peek();
            assertEquals(10_000, first.getTimestamp());
            assertEquals("ecg-raw", ((Row) first.getValue()).getField(0));
        }
    }

    @Test
    void restoreReEmitsTheCheckpointedWatermarkAndNeverFallsBelowIt() throws Exception {
        OperatorSubtaskState snapshot = checkpointOfTwoPartitionsAtWatermark5000();
        try (OneInputStreamOperatorTestHarness<Row, Row> after = opened(snapshot)) {
            // The source restarts at the lowest watermark and has nothing new to read.
            assertEquals(List.of(), progressOf(after));
            after.setProcessingTime(1); // the task runs: the timer registered in open() fires
            assertEquals(List.of("W5000"), progressOf(after));
            after.processWatermark(Long.MIN_VALUE);
            after.processWatermark(4_000);
            assertEquals(List.of("W5000"), progressOf(after), "a restored job's watermark never goes back");
            after.processWatermark(6_000);
            assertEquals(List.of("W5000", "W6000"), progressOf(after));
        }
    }

    @Test
    void allIdleAfterRestoreAdvancesToWhatTheUninterruptedRunReaches() throws Exception {
        // Uninterrupted: all idle, the newest partition (1, t=12000) sets the watermark: 12000 - 2000 - 1.
        OperatorSubtaskState snapshot;
        try (OneInputStreamOperatorTestHarness<Row, Row> uninterrupted = opened(null)) {
            uninterrupted.processElement(record("ecg-raw", 0, 0, 10_000));
            uninterrupted.processElement(record("ecg-raw", 1, 0, 12_000));
            uninterrupted.processWatermark(5_000);
            snapshot = uninterrupted.snapshot(1L, 1L);
            uninterrupted.processWatermarkStatus(WatermarkStatus.IDLE);
            assertEquals(List.of("W5000", "W9999", "IDLE"), progressOf(uninterrupted));
        }
        // Restored from the checkpoint taken before the source went idle, with nothing left to read.
        try (OneInputStreamOperatorTestHarness<Row, Row> restored = opened(snapshot)) {
            restored.setProcessingTime(1);
            restored.processWatermarkStatus(WatermarkStatus.IDLE);
            assertEquals(List.of("W5000", "W9999", "IDLE"), progressOf(restored));
            assertEquals(0, recordsOut(restored));
        }
    }

    @Test
    void allIdleReachesTheNewestPartitionWhicheverWasReadLast() throws Exception {
        for (boolean olderLast : new boolean[] {false, true}) {
            try (OneInputStreamOperatorTestHarness<Row, Row> harness = opened(null)) {
                // A drained backlog: the order the fetcher read the partitions in must not matter.
                harness.processElement(record("ecg-raw", olderLast ? 1 : 0, 0, olderLast ? 12_000 : 10_000));
                harness.processElement(record("ecg-raw", olderLast ? 0 : 1, 0, olderLast ? 10_000 : 12_000));
                harness.processWatermark(7_999);
                harness.processWatermarkStatus(WatermarkStatus.IDLE);
                assertEquals(List.of("W7999", "W9999", "IDLE"), progressOf(harness));
            }
        }
    }

    @Test
    void aWatermarkRaisedWhileIdleIsAnnouncedAsActiveForThatStep() throws Exception {
        OperatorSubtaskState snapshot;
        try (OneInputStreamOperatorTestHarness<Row, Row> before = opened(null)) {
            before.processElement(record("ecg-raw", 0, 0, 10_000));
            before.processWatermark(7_999);
            before.processWatermarkStatus(WatermarkStatus.IDLE);
            snapshot = before.snapshot(1L, 1L);
        }
        try (OneInputStreamOperatorTestHarness<Row, Row> after = opened(snapshot)) {
            after.processWatermarkStatus(WatermarkStatus.IDLE); // nothing to read after the restore
            after.setProcessingTime(1);
            readsAgainUpTo17999(after);
            assertEquals(List.of("W7999", "IDLE", "ACTIVE", "W17999"), progressOf(after));
        }
    }

    @Test
    void restoredWithNothingToReadAdvancesAtTheIdleTimeoutWhenTheSourceNeverReportsIdle() throws Exception {
        OperatorSubtaskState snapshot = checkpointOfTwoPartitionsAtWatermark5000();
        try (OneInputStreamOperatorTestHarness<Row, Row> restored = opened(snapshot, 30_000)) {
            restored.setProcessingTime(1);
            assertEquals(List.of("W5000"), progressOf(restored));
            restored.setProcessingTime(34_000); // the idle timeout, not yet its grace: the source's turn
            assertEquals(List.of("W5000"), progressOf(restored));
            restored.setProcessingTime(36_000); // the source never said idle: what it would have done
            assertEquals(List.of("W5000", "W9999", "IDLE"), progressOf(restored));
            restored.processWatermarkStatus(WatermarkStatus.IDLE); // a late report changes nothing
            restored.setProcessingTime(90_000);
            assertEquals(List.of("W5000", "W9999", "IDLE"), progressOf(restored));
            readsAgainUpTo17999(restored); // the source reads again
            assertEquals(List.of("W5000", "W9999", "IDLE", "ACTIVE", "W17999"), progressOf(restored));
        }
    }

    @Test
    void theFallbackNeverFiresWhileRecordsFlowAndGivesWayToRecordsAfterIt() throws Exception {
        try (OneInputStreamOperatorTestHarness<Row, Row> harness = opened(null, 3_000)) {
            for (int second = 1; second <= 20; second++) {
                harness.processElement(record("ecg-raw", 0, second, second * 1_000L));
                harness.setProcessingTime(second * 2_000L); // a record every 2 s, under the 3 s timeout
            }
            assertEquals(List.of(), progressOf(harness));
            harness.setProcessingTime(38_000 + 7_000); // silent for 7 s since the last record: within timeout + grace
            assertEquals(List.of(), progressOf(harness));
            harness.setProcessingTime(38_000 + 9_000); // silent for 9 s > timeout + grace
            assertEquals(List.of("W17999", "IDLE"), progressOf(harness));
            harness.processElement(record("ecg-raw", 0, 21, 21_000)); // the fallback's idleness ends here
            assertEquals(List.of("W17999", "IDLE", "ACTIVE"), progressOf(harness));
            assertEquals(21, recordsOut(harness));
        }
    }

    @Test
    void anIdleInputIsAnnouncedOnlyOnceItsLastWatermarkIsTheDelayOld() throws Exception {
        try (OneInputStreamOperatorTestHarness<Row, Row> harness = opened(null, 0, 5_000)) {
            harness.processElement(record("ecg-raw", 0, 0, 10_000));
            harness.processWatermark(7_999); // at processing time 0
            harness.processWatermarkStatus(WatermarkStatus.IDLE);
            // A Python operator downstream may still hold W7999 in an open bundle: an IDLE now would overtake it.
            assertEquals(List.of("W7999"), progressOf(harness));
            harness.setProcessingTime(4_999);
            assertEquals(List.of("W7999"), progressOf(harness));
            harness.setProcessingTime(5_000);
            assertEquals(List.of("W7999", "IDLE"), progressOf(harness));
            readsAgainUpTo17999(harness);
            assertEquals(List.of("W7999", "IDLE", "ACTIVE", "W17999"), progressOf(harness));
        }
    }

    @Test
    void restoredWithNothingToReadTheAllIdleWatermarkComesFirstAndTheIdleStatusAfterTheDelay() throws Exception {
        OperatorSubtaskState snapshot = checkpointOfTwoPartitionsAtWatermark5000();
        try (OneInputStreamOperatorTestHarness<Row, Row> restored = opened(snapshot, 3_000, 5_000)) {
            restored.setProcessingTime(1); // the restored floor
            restored.setProcessingTime(7_900); // silent for less than the timeout + grace
            assertEquals(List.of("W5000"), progressOf(restored));
            restored.setProcessingTime(8_500); // the fallback: the all-idle watermark, not yet the status
            assertEquals(List.of("W5000", "W9999"), progressOf(restored));
            restored.processWatermarkStatus(WatermarkStatus.IDLE); // the source's late report: no status yet either
            restored.setProcessingTime(13_000);
            assertEquals(List.of("W5000", "W9999"), progressOf(restored));
            restored.setProcessingTime(15_000);
            assertEquals(List.of("W5000", "W9999", "IDLE"), progressOf(restored));
            restored.processWatermarkStatus(WatermarkStatus.ACTIVE); // the source reads again: active at once
            assertEquals(List.of("W5000", "W9999", "IDLE", "ACTIVE"), progressOf(restored));
        }
    }

    @Test
    void idleIsAnnouncedOnlyAfterACheckpointTakenBehindTheLastWatermarkCompleted() throws Exception {
        // A slow operator downstream may hold the watermark in its input queue for minutes: only a completed
        // checkpoint whose barrier followed the watermark proves every operator has processed it.
        try (OneInputStreamOperatorTestHarness<Row, Row> harness =
                opened(new EventTimeProgress(OUT_OF_ORDERNESS, 0, 0, true), null)) {
            harness.processElement(record("ecg-raw", 0, 0, 10_000));
            harness.snapshot(1L, 1L); // before the watermark: proves nothing about it
            harness.processWatermark(7_999);
            harness.processWatermarkStatus(WatermarkStatus.IDLE);
            harness.notifyOfCompletedCheckpoint(1L);
            assertEquals(List.of("W7999"), progressOf(harness));
            harness.snapshot(2L, 2L);
            assertEquals(List.of("W7999"), progressOf(harness));
            harness.notifyOfCompletedCheckpoint(2L);
            assertEquals(List.of("W7999", "IDLE"), progressOf(harness));
            readsAgainUpTo17999(harness);
            harness.processWatermarkStatus(WatermarkStatus.IDLE);
            assertEquals(List.of("W7999", "IDLE", "ACTIVE", "W17999"), progressOf(harness));
            harness.snapshot(3L, 3L);
            harness.notifyOfCompletedCheckpoint(3L);
            assertEquals(List.of("W7999", "IDLE", "ACTIVE", "W17999", "IDLE"), progressOf(harness));
        }
    }

    /**
     * A broker that answers what the test says (null: no answer; TRUE: every partition read to its end; FALSE:
     * records left in {@code unreadPartitions}), and remembers what it was asked.
     */
    private static final class ScriptedEnd extends InputEndCheck {
        private static final long serialVersionUID = 1L;
        volatile Boolean answer;
        volatile Set<String> unreadPartitions = Set.of("ecg-raw#0", "ecg-raw#1");
        volatile Map<String, Long> asked = new HashMap<>();

        ScriptedEnd(Boolean answer) {
            super("unused:9092", Map.of());
            this.answer = answer;
        }

        /** Every partition begins at offset 0 and, from the end on, starts at 100. */
        @Override
        public Map<String, Long> resolveStarts(Map<String, Long> offsets) {
            Map<String, Long> resolved = new HashMap<>(offsets);
            resolved.replaceAll((partition, offset) -> offset == EARLIEST ? 0L : offset == LATEST ? 100L : offset);
            return resolved;
        }

        @Override
        public Set<String> unread(Map<String, Long> nextOffsets) {
            asked = new HashMap<>(nextOffsets);
            return answer == null ? null : answer ? Set.of() : unreadPartitions;
        }
    }

    /** Lets processing time pass in 1 s steps (the end check's period) until the output shows {@code expected}. */
    private static void untilProgressIs(OneInputStreamOperatorTestHarness<Row, Row> harness, List<String> expected)
            throws Exception {
        long deadline = System.currentTimeMillis() + 10_000;
        long now = harness.getProcessingTime();
        while (!progressOf(harness).equals(expected) && System.currentTimeMillis() < deadline) {
            now += 1_000;
            harness.setProcessingTime(now);
            Thread.sleep(20);
        }
        assertEquals(expected, progressOf(harness));
    }

    @Test
    void allIdleWaitsForTheBrokerToConfirmThatEveryPartitionIsReadToItsEnd() throws Exception {
        ScriptedEnd broker = new ScriptedEnd(null); // unreachable: a broker outage
        try (OneInputStreamOperatorTestHarness<Row, Row> harness =
                opened(new EventTimeProgress(OUT_OF_ORDERNESS, 0, 0, false, broker), null)) {
            harness.processElement(record("ecg-raw", 0, 41, 10_000));
            harness.processElement(record("ecg-raw", 1, 7, 12_000));
            harness.processWatermark(5_000);
            harness.processWatermarkStatus(WatermarkStatus.IDLE);
            for (int second = 1; second <= 5; second++) {
                harness.setProcessingTime(second * 1_000L);
                Thread.sleep(20);
            }
            assertEquals(List.of("W5000"), progressOf(harness), "no jump while the broker does not answer");
            broker.answer = Boolean.FALSE; // back, with records after the last one read
            for (int second = 6; second <= 10; second++) {
                harness.setProcessingTime(second * 1_000L);
                Thread.sleep(20);
            }
            assertEquals(List.of("W5000"), progressOf(harness), "no jump while records are left to read");
            assertEquals(Map.of("ecg-raw#0", 42L, "ecg-raw#1", 8L), broker.asked);
            broker.answer = Boolean.TRUE;
            untilProgressIs(harness, List.of("W5000", "W9999", "IDLE"));
        }
    }

    @Test
    void aRestoredJobAsksTheBrokerFromTheCheckpointedOffsetsBeforeTheAllIdleJump() throws Exception {
        OperatorSubtaskState snapshot;
        try (OneInputStreamOperatorTestHarness<Row, Row> before =
                opened(new EventTimeProgress(OUT_OF_ORDERNESS, 0, 0, false, new ScriptedEnd(Boolean.TRUE)), null)) {
            before.processElement(record("ecg-raw", 0, 41, 10_000));
            before.processElement(record("ecg-raw", 1, 7, 12_000));
            before.processWatermark(5_000);
            snapshot = before.snapshot(1L, 1L);
        }
        // Restored while the broker is down: the source reads nothing and reports idle.
        ScriptedEnd broker = new ScriptedEnd(null);
        try (OneInputStreamOperatorTestHarness<Row, Row> restored =
                opened(new EventTimeProgress(OUT_OF_ORDERNESS, 0, 0, false, broker), snapshot)) {
            restored.setProcessingTime(1);
            restored.processWatermarkStatus(WatermarkStatus.IDLE);
            for (int second = 1; second <= 5; second++) {
                restored.setProcessingTime(second * 1_000L);
                Thread.sleep(20);
            }
            assertEquals(List.of("W5000"), progressOf(restored), "the restored windows wait for their frames");
            assertEquals(Map.of("ecg-raw#0", 42L, "ecg-raw#1", 8L), broker.asked);
            broker.answer = Boolean.TRUE;
            untilProgressIs(restored, List.of("W5000", "W9999", "IDLE"));
        }
    }

    @Test
    void recordsWhileWaitingForTheBrokerResumeTheNormalFlow() throws Exception {
        ScriptedEnd broker = new ScriptedEnd(null);
        try (OneInputStreamOperatorTestHarness<Row, Row> harness =
                opened(new EventTimeProgress(OUT_OF_ORDERNESS, 0, 0, false, broker), null)) {
            harness.processElement(record("ecg-raw", 0, 0, 10_000));
            harness.processWatermark(5_000);
            harness.processWatermarkStatus(WatermarkStatus.IDLE);
            harness.setProcessingTime(1_000);
            readsAgainUpTo17999(harness);
            broker.answer = Boolean.TRUE; // a late answer for the old idleness changes nothing
            for (int second = 2; second <= 5; second++) {
                harness.setProcessingTime(second * 1_000L);
                Thread.sleep(20);
            }
            assertEquals(List.of("W5000", "W17999"), progressOf(harness));
        }
    }

    @Test
    void afterAnUnconfirmedIdlenessEveryPartitionHoldsEventTimeUntilItDeliversAgain() throws Exception {
        ScriptedEnd broker = new ScriptedEnd(null); // a broker outage
        try (OneInputStreamOperatorTestHarness<Row, Row> harness =
                opened(new EventTimeProgress(OUT_OF_ORDERNESS, 0, 0, false, broker), null)) {
            harness.processElement(record("ecg-raw", 0, 0, 10_000));
            harness.processElement(record("ecg-raw", 1, 0, 12_000));
            harness.processWatermark(5_000);
            harness.processWatermarkStatus(WatermarkStatus.IDLE);
            harness.setProcessingTime(1_000);
            // The broker is back; partition 0 delivers first and the source's watermark follows it alone.
            broker.answer = Boolean.FALSE;
            broker.unreadPartitions = Set.of("ecg-raw#1");
            readsAgainUpTo17999(harness);
            assertEquals(List.of("W5000", "W9999"), progressOf(harness), "partition 1 (t=12000) holds event time");
            harness.processElement(record("ecg-raw", 1, 1, 19_000));
            harness.processWatermark(16_999);
            assertEquals(List.of("W5000", "W9999", "W16999"), progressOf(harness));
        }
    }

    @Test
    void afterAnUnconfirmedIdlenessAPartitionReadToItsEndStopsHoldingEventTime() throws Exception {
        ScriptedEnd broker = new ScriptedEnd(null);
        try (OneInputStreamOperatorTestHarness<Row, Row> harness =
                opened(new EventTimeProgress(OUT_OF_ORDERNESS, 0, 0, false, broker), null)) {
            harness.processElement(record("ecg-raw", 0, 0, 10_000));
            harness.processElement(record("ecg-raw", 1, 0, 12_000));
            harness.processWatermark(5_000);
            harness.processWatermarkStatus(WatermarkStatus.IDLE);
            harness.setProcessingTime(1_000);
            broker.answer = Boolean.FALSE;
            broker.unreadPartitions = Set.of(); // partition 1 has nothing more: a quiet partition
            readsAgainUpTo17999(harness);
            assertEquals(List.of("W5000", "W9999"), progressOf(harness));
            // The broker's answer releases partition 1: the source's watermark goes through.
            untilProgressIs(harness, List.of("W5000", "W9999", "W17999"));
        }
    }

    @Test
    void aPartitionTheSourceTakesForIdleWithRecordsUnreadHoldsEventTimeUntilItDeliversOrIsReadToItsEnd()
            throws Exception {
        // A loaded machine: the source has not read partition 0 for its idle timeout and leaves it out of its
        // watermark, but the broker still holds records of it (issue 19: late frames under load).
        ScriptedEnd broker = new ScriptedEnd(Boolean.FALSE);
        broker.unreadPartitions = Set.of("ecg-raw#0");
        try (OneInputStreamOperatorTestHarness<Row, Row> harness =
                opened(new EventTimeProgress(OUT_OF_ORDERNESS, 0, 0, false, broker), null)) {
            harness.processElement(record("ecg-raw", 0, 0, 10_000));
            harness.processElement(record("ecg-raw", 1, 0, 30_000));
            harness.processWatermark(7_999);
            harness.processWatermark(27_999); // partition 0 left out by the source
            for (int second = 1; second <= 4; second++) {
                harness.setProcessingTime(second * 1_000L);
                Thread.sleep(20);
            }
            assertEquals(List.of("W7999"), progressOf(harness), "partition 0 has records left: event time waits");
            assertEquals(Map.of("ecg-raw#0", 1L), broker.asked);
            harness.processElement(record("ecg-raw", 0, 1, 20_000)); // its turn comes
            harness.processWatermark(17_999);
            assertEquals(List.of("W7999", "W17999"), progressOf(harness));
            broker.unreadPartitions = Set.of(); // and now it has nothing more: a quiet partition
            harness.processWatermark(27_999);
            untilProgressIs(harness, List.of("W7999", "W17999", "W27999"));
            harness.processElement(record("ecg-raw", 0, 2, 40_000)); // it delivers again: it counts again
            harness.processElement(record("ecg-raw", 1, 1, 50_000));
            harness.processWatermark(37_999);
            assertEquals(List.of("W7999", "W17999", "W27999", "W37999"), progressOf(harness));
        }
    }

    @Test
    void anAssignedPartitionThatHasNotDeliveredYetHoldsEventTimeUntilItDeliversOrIsEmpty() throws Exception {
        // A throttled reader emits one partition's poll at a time: partition 1 has records, but not its turn yet.
        AssignedPartitions.add("ecg-raw#0", 0);
        AssignedPartitions.add("ecg-raw#1", 5);
        AssignedPartitions.add("ecg-raw#2", InputEndCheck.EARLIEST); // the connector's "from the beginning"
        ScriptedEnd broker = new ScriptedEnd(Boolean.FALSE);
        broker.unreadPartitions = Set.of("ecg-raw#1"); // partition 2 is empty
        try (OneInputStreamOperatorTestHarness<Row, Row> harness =
                opened(new EventTimeProgress(OUT_OF_ORDERNESS, 0, 0, false, broker), null)) {
            harness.processElement(record("ecg-raw", 0, 0, 10_000));
            harness.processWatermark(7_999); // partitions 1 and 2 taken for idle by the source
            for (int second = 1; second <= 4; second++) {
                harness.setProcessingTime(second * 1_000L);
                Thread.sleep(20);
            }
            assertEquals(List.of(), progressOf(harness), "partition 1 has records from offset 5 on: no event time");
            // Partition 2, resolved to its beginning (0) and confirmed empty from there, is no longer asked about.
            assertEquals(Map.of("ecg-raw#1", 5L), broker.asked);
            harness.processElement(record("ecg-raw", 1, 5, 9_000)); // its turn
            harness.processWatermark(7_999);
            assertEquals(List.of("W6999"), progressOf(harness));
            harness.processElement(record("ecg-raw", 1, 6, 11_000));
            harness.processWatermark(7_999);
            assertEquals(List.of("W6999", "W7999"), progressOf(harness));
        } finally {
            AssignedPartitions.clear();
        }
    }

    @Test
    void aPartitionTheReaderNeverComesBackToHoldsEventTimeOnlyUpToTheLimit() throws Exception {
        ScriptedEnd broker = new ScriptedEnd(Boolean.FALSE);
        broker.unreadPartitions = Set.of("ecg-raw#0"); // records unread, but the reader reads only partition 1
        try (OneInputStreamOperatorTestHarness<Row, Row> harness =
                opened(new EventTimeProgress(OUT_OF_ORDERNESS, 0, 0, false, broker, 5_000), null)) {
            harness.processElement(record("ecg-raw", 0, 0, 10_000));
            harness.processElement(record("ecg-raw", 1, 0, 30_000));
            harness.processWatermark(7_999);
            harness.processWatermark(27_999);
            for (int second = 1; second <= 4; second++) {
                harness.setProcessingTime(second * 1_000L);
                Thread.sleep(20);
            }
            assertEquals(List.of("W7999"), progressOf(harness), "within the limit: held");
            untilProgressIs(harness, List.of("W7999", "W27999"));
            harness.processElement(record("ecg-raw", 0, 1, 12_000)); // it comes back: late, and held again
            harness.processElement(record("ecg-raw", 1, 1, 40_000));
            harness.processWatermark(37_999);
            assertEquals(List.of("W7999", "W27999"), progressOf(harness));
        }
    }

    @Test
    void theEndOfABoundedInputIsNeverHeld() throws Exception {
        ScriptedEnd broker = new ScriptedEnd(Boolean.FALSE); // records after the stop offsets of a backfill
        try (OneInputStreamOperatorTestHarness<Row, Row> harness =
                opened(new EventTimeProgress(OUT_OF_ORDERNESS, 0, 0, false, broker), null)) {
            harness.processElement(record("ecg-raw", 0, 0, 10_000));
            harness.processElement(record("ecg-raw", 1, 0, 30_000));
            harness.processWatermark(7_999);
            harness.processWatermark(Long.MAX_VALUE);
            assertEquals(List.of("W7999", "W" + Long.MAX_VALUE), progressOf(harness));
        }
    }

    @Test
    void withoutABrokerToAskTheSourcesWatermarkGoesThroughUnheld() throws Exception {
        try (OneInputStreamOperatorTestHarness<Row, Row> harness = opened(null)) {
            harness.processElement(record("ecg-raw", 0, 0, 10_000));
            harness.processElement(record("ecg-raw", 1, 0, 30_000));
            harness.processWatermark(27_999);
            assertEquals(List.of("W27999"), progressOf(harness));
        }
    }
}
