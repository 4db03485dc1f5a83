package io.ecgflinkanon.connectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.ArrayList;
import java.util.List;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.junit.jupiter.api.Test;

/** RoundTicks through Flink's one-input operator harness: rounds of 20 s closing 5 s after their end. */
class RoundTicksTest {
    private static OneInputStreamOperatorTestHarness<byte[], Long> opened() throws Exception {
        OneInputStreamOperatorTestHarness<byte[], Long> harness =
                new OneInputStreamOperatorTestHarness<>(new RoundTicks<>(20_000, 5_000));
        harness.setup();
        harness.initializeEmptyState();
        harness.open();
        return harness;
    }

    /** Output in order: "W<t>" for a watermark, "T<t>" for a tick. */
    private static List<String> outputOf(OneInputStreamOperatorTestHarness<byte[], Long> harness) {
        List<String> seen = new ArrayList<>();
        for (Object element : harness.getOutput()) {
            if (element instanceof Watermark) {
                seen.add("W" + ((Watermark) element).getTimestamp());
            } else if (element instanceof StreamRecord) {
                seen.add("T" + ((StreamRecord<?>) element).getValue());
            }
        }
        return seen;
    }

    @Test
    void ticksAtTheFirstWatermarkAndAtEveryRoundCloseAfterTheWatermarkItself() throws Exception {
        try (OneInputStreamOperatorTestHarness<byte[], Long> harness = opened()) {
            harness.processElement(new StreamRecord<>(new byte[] {1}, 1_000));
            harness.processWatermark(Long.MIN_VALUE); // forwarded, no tick
            harness.processWatermark(30_000); // first watermark: round 1 (closes at 24 999) reached
            harness.processWatermark(44_998); // round 2 closes at 44 999: not yet
            harness.processWatermark(44_999);
            harness.processWatermark(50_000); // still round 2
            harness.processWatermark(130_000); // rounds 3..6 at once: one tick
            assertEquals(List.of("W" + Long.MIN_VALUE, "W30000", "T30000", "W44998", "W44999", "T44999", "W50000", "W130000", "T130000"),
                    outputOf(harness));
        }
    }

    @Test
    void aRestoredOperatorTicksAtItsFirstWatermarkAgain() throws Exception {
        try (OneInputStreamOperatorTestHarness<byte[], Long> first = opened()) {
            first.processWatermark(30_000);
            first.processWatermark(35_000);
            assertEquals(List.of("W30000", "T30000", "W35000"), outputOf(first));
        }
        // Stateless: after a restore the first watermark (the restored floor) ticks, so the aggregator closes
        // what its restored open rounds allow even if the timers it had registered were not checkpointed.
        try (OneInputStreamOperatorTestHarness<byte[], Long> restored = opened()) {
            restored.processWatermark(35_000);
            assertEquals(List.of("W35000", "T35000"), outputOf(restored));
        }
    }

    @Test
    void dropsRecordsAndRejectsAGraceOutsideTheRound() {
        assertThrows(IllegalArgumentException.class, () -> new RoundTicks<byte[]>(20_000, 20_000));
        assertThrows(IllegalArgumentException.class, () -> new RoundTicks<byte[]>(20_000, 0));
    }
}
