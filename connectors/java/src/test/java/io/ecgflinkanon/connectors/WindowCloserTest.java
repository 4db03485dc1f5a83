package io.ecgflinkanon.connectors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/** WindowCloser driven through Flink's keyed one-input harness: 10 s windows, no allowed lateness. */
class WindowCloserTest {
    private static final long WINDOW = 10_000;
    private static final long PACE = 200;

    private static final KeySelector<Row, Row> BY_WARD = row -> Row.of(row.getField(0));

    private static KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> opened(long paceMillis,
            OperatorSubtaskState restoreFrom) throws Exception {
        return Harnesses.opened(new KeyedOneInputStreamOperatorTestHarness<>(
                new WindowCloser(WINDOW, 0, paceMillis), BY_WARD, Types.ROW(Types.STRING)), restoreFrom);
    }

    private static StreamRecord<Row> frame(String ward, long timestamp) {
        return new StreamRecord<>(Row.of(ward, new byte[] {1, 2, 3}), timestamp);
    }

    /**
     * The output in order: "F:ward" for a forwarded frame, "L:ward" for a late frame, "C:ward@close" for a
     * close, "W<ts>" for a watermark.
     */
    private static List<String> outputOf(KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness) {
        return Harnesses.drained(harness, record -> {
            Row row = (Row) record.getValue();
            byte[] value = (byte[]) row.getField(1);
            if (value.length == 3) {
                return "F:" + row.getField(0);
            }
            if (value[1] == 3) {
                return "L:" + row.getField(0);
            }
            return "C:" + row.getField(0) + "@" + ByteBuffer.wrap(value, 4, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        });
    }

    @Test
    void closesEachKeysWindowBeforeTheWatermarkThatPassesIt() throws Exception {
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness = opened(0, null)) {
            harness.processElement(frame("a", 1_000));
            harness.processElement(frame("b", 9_999));
            harness.processElement(frame("a", 12_000));
            harness.processWatermark(9_998);
            assertEquals(List.of("F:a", "F:b", "F:a", "W9998"), outputOf(harness));
            harness.processWatermark(9_999);
            List<String> out = outputOf(harness);
            assertEquals(List.of("C:a@9999", "C:b@9999"), out.subList(0, 2).stream().sorted().toList());
            assertEquals("W9999", out.get(2));
            harness.processWatermark(25_000); // unpaced: a's second window at once
            assertEquals(List.of("C:a@19999", "W25000"), outputOf(harness));
        }
    }

    @Test
    void aFrameWhoseWindowTheInputWatermarkPassedIsLateAndRegistersNoClose() throws Exception {
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness = opened(0, null)) {
            harness.processWatermark(10_000);
            harness.processElement(frame("a", 9_999));
            harness.processElement(frame("a", 10_000));
            harness.processWatermark(30_000);
            assertEquals(List.of("W10000", "L:a", "F:a", "C:a@19999", "W30000"), outputOf(harness));
        }
    }

    @Test
    void pacedClosesOneWindowPerStepAndHoldsTheWatermarkAtIt() throws Exception {
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness = opened(PACE, null)) {
            for (long t = 0; t < 40_000; t += 5_000) {
                harness.processElement(frame("a", t));
            }
            harness.processElement(frame("b", 25_000));
            outputOf(harness);
            harness.processWatermark(35_000); // passes three windows' close times (9999, 19999, 29999)
            assertEquals(List.of("C:a@9999", "W9999"), outputOf(harness));
            // Late is judged by the input watermark, not the held one: pacing changes no verdict.
            harness.processElement(frame("a", 15_000));
            assertEquals(List.of("L:a"), outputOf(harness));
            harness.setProcessingTime(PACE - 1);
            assertEquals(List.of(), outputOf(harness));
            harness.setProcessingTime(PACE);
            assertEquals(List.of("C:a@19999", "W19999"), outputOf(harness));
            harness.processWatermark(36_000); // a newer watermark does not skip the pace
            assertEquals(List.of(), outputOf(harness));
            harness.setProcessingTime(2 * PACE);
            List<String> out = outputOf(harness);
            assertEquals(List.of("C:a@29999", "C:b@29999"), out.subList(0, 2).stream().sorted().toList());
            // The last close below the input watermark: the rest of the watermark follows at once.
            assertEquals(List.of("W29999", "W36000"), out.subList(2, out.size()));
            harness.setProcessingTime(3 * PACE);
            assertEquals(List.of(), outputOf(harness));
        }
    }

    @Test
    void stepsThatCloseNothingAreTakenAtOnce() throws Exception {
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness = opened(PACE, null)) {
            harness.processElement(frame("a", 1_000));
            harness.processElement(frame("a", 95_000)); // eight empty windows between
            outputOf(harness);
            harness.processWatermark(200_000);
            assertEquals(List.of("C:a@9999", "W9999"), outputOf(harness));
            harness.setProcessingTime(PACE);
            assertEquals(List.of("C:a@99999", "W99999", "W200000"), outputOf(harness));
        }
    }

    @Test
    void theFinalWatermarkClosesEverythingAtOnce() throws Exception {
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness = opened(PACE, null)) {
            harness.processElement(frame("a", 1_000));
            harness.processElement(frame("a", 11_000));
            harness.processElement(frame("b", 21_000));
            outputOf(harness);
            harness.processWatermark(Long.MAX_VALUE);
            List<String> out = outputOf(harness);
            assertEquals(List.of("C:a@19999", "C:a@9999", "C:b@29999"), out.subList(0, 3).stream().sorted().toList());
            assertEquals(List.of("W" + Long.MAX_VALUE), out.subList(3, out.size()));
        }
    }

    @Test
    void theFinalWatermarkDoesNotWaitForAPacedStep() throws Exception {
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness = opened(PACE, null)) {
            harness.processElement(frame("a", 1_000));
            harness.processElement(frame("a", 11_000));
            harness.processElement(frame("a", 21_000));
            harness.processWatermark(25_000);
            outputOf(harness);
            harness.processWatermark(Long.MAX_VALUE); // a bounded input ends while a step is scheduled
            assertEquals(List.of("C:a@19999", "C:a@29999", "W" + Long.MAX_VALUE), outputOf(harness));
            harness.setProcessingTime(PACE); // the step, when it comes, has nothing left to do
            assertEquals(List.of(), outputOf(harness));
        }
    }

    @Test
    void aWindowWhoseFramesCameJustBeforeACheckpointClosesAfterTheRestore() throws Exception {
        // The hole this operator closes: a ward's last window, all its frames after the last watermark and
        // before the barrier, then the ward silent and the job restored. Its close is in the checkpoint.
        OperatorSubtaskState snapshot;
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> before = opened(PACE, null)) {
            before.processWatermark(5_000);
            before.processElement(frame("ward", 6_000));
            snapshot = before.snapshot(1L, 1L);
        }
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> after = opened(PACE, snapshot)) {
            after.processWatermark(60_000);
            assertEquals(List.of("C:ward@9999", "W9999", "W60000"), outputOf(after));
        }
    }

    @Test
    void textRecordsCloseWithATextAndALateOneMovesToTheWatermarksWindow() throws Exception {
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness = Harnesses.opened(
                new KeyedOneInputStreamOperatorTestHarness<>(new WindowCloser(WINDOW, 0, 0, true), BY_WARD,
                        Types.ROW(Types.STRING)), null)) {
            harness.processElement(new StreamRecord<>(Row.of("late", "{}"), 1_000));
            harness.processWatermark(12_000);
            harness.processElement(new StreamRecord<>(Row.of("late", "{}"), 2_000)); // its window closed: moves
            harness.processWatermark(20_000);
            List<String> seen = Harnesses.drained(harness,
                    record -> ((Row) record.getValue()).getField(1) + "@" + record.getTimestamp());
            assertEquals(List.of("{}@1000", "window-close:9999@9999", "W12000", "{}@12001",
                    "window-close:19999@19999", "W20000"), seen);
        }
    }

    @Test
    void aLateFrameIsThePickleOfAOneTupleOfItsBytes() {
        // pickle.loads(bytes) == (b"abc",) in Python (PROTO 3, BINBYTES with a 4-byte length, TUPLE1, STOP).
        assertArrayEquals(new byte[] {(byte) 0x80, 3, 'B', 3, 0, 0, 0, 'a', 'b', 'c', (byte) 0x85, '.'},
                WindowCloser.lateFrame(new byte[] {'a', 'b', 'c'}));
    }
}
