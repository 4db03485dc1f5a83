package io.ecgflinkanon.connectors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.junit.jupiter.api.Test;

/** RoundTicks driven through Flink's one-input operator harness: rounds of 30 s, grace 5 s. */
class RoundTicksTest {
    private static final byte[] SIGNAL = {7, 7};

    private static OneInputStreamOperatorTestHarness<byte[], byte[]> opened(OperatorSubtaskState restoreFrom)
            throws Exception {
        return Harnesses.opened(new OneInputStreamOperatorTestHarness<>(new RoundTicks(30_000, 5_000)), restoreFrom);
    }

    /** The output in order: "S" for a forwarded signal, "T<value>" for a tick, "W<ts>" for a watermark. */
    private static List<String> outputOf(OneInputStreamOperatorTestHarness<byte[], byte[]> harness) {
        List<String> seen = new ArrayList<>();
        for (Object element : harness.getOutput()) {
            if (element instanceof Watermark) {
                seen.add("W" + ((Watermark) element).getTimestamp());
            } else {
                byte[] value = (byte[]) ((StreamRecord<?>) element).getValue();
                seen.add(value.length == 13 ? "T" + tickValue(value) : "S");
            }
        }
        return seen;
    }

    private static long tickValue(byte[] pickle) {
        return ByteBuffer.wrap(pickle, 4, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
    }

    @Test
    void ticksAtTheFirstWatermarkAndOncePerClosableRoundBehindTheWatermark() throws Exception {
        try (OneInputStreamOperatorTestHarness<byte[], byte[]> harness = opened(null)) {
            harness.processElement(new StreamRecord<>(SIGNAL, 1_000));
            harness.processWatermark(2_000);
            harness.processWatermark(4_000); // round 0 closes at 5000: not yet
            harness.processElement(new StreamRecord<>(SIGNAL, 4_500));
            harness.processWatermark(4_999); // reaches 5000 - 1: round 0 closable
            harness.processWatermark(30_000);
            harness.processWatermark(34_999); // round 1 closable
            harness.processWatermark(100_000); // rounds 2 and 3 at once: one tick
            assertEquals(List.of("S", "W2000", "T2000", "W4000", "S", "W4999", "T4999", "W30000", "W34999",
                    "T34999", "W100000", "T100000"), outputOf(harness));
        }
    }

    @Test
    void aRestoredOperatorTicksAtItsFirstWatermarkAgain() throws Exception {
        OperatorSubtaskState snapshot;
        try (OneInputStreamOperatorTestHarness<byte[], byte[]> before = opened(null)) {
            before.processWatermark(40_000);
            snapshot = before.snapshot(1L, 1L);
        }
        try (OneInputStreamOperatorTestHarness<byte[], byte[]> after = opened(snapshot)) {
            after.processWatermark(40_000);
            after.processWatermark(41_000);
            assertEquals(List.of("W40000", "T40000", "W41000"), outputOf(after));
        }
    }

    @Test
    void theEndOfInputTicksWithoutOverflow() throws Exception {
        try (OneInputStreamOperatorTestHarness<byte[], byte[]> harness = opened(null)) {
            harness.processWatermark(40_000);
            harness.processWatermark(Long.MAX_VALUE);
            assertEquals(List.of("W40000", "T40000", "W" + Long.MAX_VALUE, "T" + Long.MAX_VALUE), outputOf(harness));
        }
    }

    @Test
    void aTickIsThePickleOfAPythonInt() {
        // pickle.loads(bytes) == 258 in Python (PROTO 2, LONG1 of 8 little-endian bytes, STOP).
        assertArrayEquals(new byte[] {(byte) 0x80, 2, (byte) 0x8a, 8, 2, 1, 0, 0, 0, 0, 0, 0, '.'},
                RoundTicks.pickledLong(258));
    }
}
