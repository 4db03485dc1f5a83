package io.ecgflinkanon.connectors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.api.java.tuple.Tuple3;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/** FrameBlocks driven through Flink's keyed one-input harness: 5 s blocks of 1 s frames (4 Hz, 4 samples). */
class FrameBlocksTest {
    private static final long BLOCK = 5_000;
    private static final double FS = 4.0;

    private static final KeySelector<Row, Row> BY_PID = row -> Row.of(row.getField(0));

    private static KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> opened(OperatorSubtaskState restoreFrom)
            throws Exception {
        return Harnesses.opened(new KeyedOneInputStreamOperatorTestHarness<>(
                new FrameBlocks(BLOCK), BY_PID, Types.ROW(Types.STRING)), restoreFrom);
    }

    /** The samples of {@code pid}'s 1 s frame at {@code ts}: four float64 values derived from both. */
    private static byte[] samplesOf(String pid, long ts) {
        ByteBuffer samples = ByteBuffer.allocate(32).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < 4; i++) {
            samples.putDouble(ts + i / 4.0 + pid.hashCode());
        }
        return samples.array();
    }

    private static StreamRecord<Row> frame(String pid, long ts) {
        return new StreamRecord<>(Row.of(pid, ts, FS, samplesOf(pid, ts)), ts);
    }

    /** A block as decoded: "pid[ts,ts,...]@recordTimestamp", every frame's fs and samples checked. */
    private static String blockOf(StreamRecord<?> record) {
        Row row = (Row) record.getValue();
        String pid = (String) row.getField(0);
        Object[] block = (Object[]) unpickle((byte[]) row.getField(1));
        assertEquals(2, block.length);
        assertEquals(pid, block[0]);
        List<String> stamps = new ArrayList<>();
        for (Object item : (List<?>) block[1]) {
            Object[] frame = (Object[]) item;
            long ts = (Long) frame[0];
            assertEquals(FS, (Double) frame[1]);
            assertArrayEquals(samplesOf(pid, ts), (byte[]) frame[2]);
            stamps.add(Long.toString(ts));
        }
        return pid + "[" + String.join(",", stamps) + "]@" + record.getTimestamp();
    }

    /** The output in order: blocks as {@link #blockOf}, "P:pid:bytes@ts" for a pass-through, "W<ts>". */
    private static List<String> outputOf(KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness) {
        return Harnesses.drained(harness, record -> {
            byte[] payload = (byte[]) ((Row) record.getValue()).getField(1);
            return payload[0] == (byte) 0x80
                    ? blockOf(record)
                    : "P:" + ((Row) record.getValue()).getField(0) + ":" + Arrays.toString(payload) + "@"
                            + record.getTimestamp();
        });
    }

    private static final Object MARK = new Object();

    /** pickle.loads for exactly the opcodes FrameBlocks writes: tuples as Object[], lists as List. */
    private static Object unpickle(byte[] pickle) {
        ByteBuffer in = ByteBuffer.wrap(pickle).order(ByteOrder.LITTLE_ENDIAN);
        Deque<Object> stack = new ArrayDeque<>();
        assertEquals((byte) 0x80, in.get());
        assertEquals(3, in.get());
        while (true) {
            byte op = in.get();
            switch (op) {
                case 'X' -> {
                    byte[] text = new byte[in.getInt()];
                    in.get(text);
                    stack.push(new String(text, StandardCharsets.UTF_8));
                }
                case ']' -> stack.push(new ArrayList<>());
                case '(' -> stack.push(MARK);
                case 'e' -> {
                    List<Object> items = new ArrayList<>();
                    for (Object item = stack.pop(); item != MARK; item = stack.pop()) {
                        items.add(0, item);
                    }
                    @SuppressWarnings("unchecked")
                    List<Object> list = (List<Object>) stack.peek();
                    list.addAll(items);
                }
                case (byte) 0x8a -> {
                    assertEquals(8, in.get());
                    stack.push(in.getLong());
                }
                case 'G' -> {
                    stack.push(in.order(ByteOrder.BIG_ENDIAN).getDouble());
                    in.order(ByteOrder.LITTLE_ENDIAN);
                }
                case 'B' -> {
                    byte[] bytes = new byte[in.getInt()];
                    in.get(bytes);
                    stack.push(bytes);
                }
                case (byte) 0x87, (byte) 0x86 -> {
                    Object[] tuple = new Object[op == (byte) 0x87 ? 3 : 2];
                    for (int i = tuple.length - 1; i >= 0; i--) {
                        tuple[i] = stack.pop();
                    }
                    stack.push(tuple);
                }
                case '.' -> {
                    assertEquals(1, stack.size());
                    assertEquals(pickle.length, in.position());
                    return stack.pop();
                }
                default -> throw new AssertionError("opcode " + op + " at " + (in.position() - 1));
            }
        }
    }

    @Test
    void aFrameReachingTheBlockEndEmitsTheBlockAtItsFirstFrame() throws Exception {
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness = opened(null)) {
            for (long ts = 0; ts < 4_000; ts += 1_000) {
                harness.processElement(frame("dev", ts));
            }
            assertEquals(List.of(), outputOf(harness));
            harness.processElement(frame("dev", 4_000)); // ends at 5000: the block's end
            assertEquals(List.of("dev[0,1000,2000,3000,4000]@0"), outputOf(harness));
            harness.processWatermark(Long.MAX_VALUE); // its timer was removed: nothing more
            assertEquals(List.of("W" + Long.MAX_VALUE), outputOf(harness));
            FrameBlocks operator = (FrameBlocks) harness.getOperator();
            assertEquals(1, operator.blocksEmitted.getCount());
            assertEquals(5, operator.framesBlocked.getCount());
        }
    }

    @Test
    void anIncompleteBlockWaitsForTheWatermarkToReachItsCloseTime() throws Exception {
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness = opened(null)) {
            harness.processElement(frame("dev", 0));
            harness.processElement(frame("dev", 1_000));
            harness.processWatermark(4_998);
            assertEquals(List.of("W-2"), outputOf(harness));
            harness.processWatermark(4_999);
            assertEquals(List.of("dev[0,1000]@0", "W-1"), outputOf(harness));
        }
    }

    @Test
    void aFrameOfAnotherBlockReleasesThePendingOneFirst() throws Exception {
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness = opened(null)) {
            harness.processElement(frame("dev", 0));
            harness.processElement(frame("dev", 1_000));
            harness.processElement(frame("dev", 5_000));
            assertEquals(List.of("dev[0,1000]@0"), outputOf(harness));
            // A straggler of an older block releases the newer one and starts a block of its own.
            harness.processElement(frame("dev", 2_000));
            assertEquals(List.of("dev[5000]@5000"), outputOf(harness));
            harness.processWatermark(4_999);
            assertEquals(List.of("dev[2000]@2000", "W-1"), outputOf(harness));
            harness.processWatermark(9_999); // the 5000 block's timer was removed when it was released
            assertEquals(List.of("W4999"), outputOf(harness));
        }
    }

    @Test
    void aFrameWhoseBlockCloseTheWatermarkPassedIsEmittedAtOnce() throws Exception {
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness = opened(null)) {
            harness.processWatermark(10_000);
            harness.processElement(frame("dev", 3_000));
            harness.processElement(frame("dev", 4_000));
            harness.processElement(frame("dev", 9_999)); // block [5000, 10000), closed at 9999
            harness.processElement(frame("dev", 10_000)); // block [10000, 15000) is still open
            assertEquals(List.of("W5000", "dev[3000]@3000", "dev[4000]@4000", "dev[9999]@9999"), outputOf(harness));
            harness.processWatermark(14_999);
            assertEquals(List.of("dev[10000]@10000", "W9999"), outputOf(harness));
        }
    }

    @Test
    void passThroughRecordsGoAtOnceAndLeaveThePendingBlockAlone() throws Exception {
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness = opened(null)) {
            harness.processElement(frame("dev", 0));
            harness.processElement(new StreamRecord<>(Row.of("dev", 500L, 0.0, new byte[] {9, 8}), 500));
            harness.processElement(frame("dev", 1_000));
            harness.processElement(new StreamRecord<>(Row.of("dev", 7_000L, -1.0, new byte[] {7}), 7_000));
            harness.processElement(frame("dev", 2_000));
            assertEquals(List.of("P:dev:[9, 8]@500", "P:dev:[7]@7000"), outputOf(harness));
            harness.processWatermark(4_999);
            assertEquals(List.of("dev[0,1000,2000]@0", "W-1"), outputOf(harness));
        }
    }

    @Test
    void theWatermarkIsHeldBackOneBlockStaysMonotoneAndItsEndFlushesEverything() throws Exception {
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness = opened(null)) {
            harness.processWatermark(Long.MIN_VALUE + 10); // minus a block: saturates, nothing to forward
            assertEquals(List.of(), outputOf(harness));
            harness.processWatermark(3_000);
            harness.processWatermark(2_000);
            harness.processWatermark(3_000);
            assertEquals(List.of("W-2000"), outputOf(harness));
            harness.processElement(frame("a", 6_000));
            harness.processElement(frame("b", 12_000));
            harness.processElement(frame("b", 13_000));
            harness.processWatermark(Long.MAX_VALUE);
            List<String> out = outputOf(harness);
            assertEquals(List.of("a[6000]@6000", "b[12000,13000]@12000"), out.subList(0, 2).stream().sorted().toList());
            assertEquals(List.of("W" + Long.MAX_VALUE), out.subList(2, out.size()));
        }
    }

    /** Appends a block's frame timestamps to its pid's list, checking they all belong to one block. */
    private static void addFramesOf(StreamRecord<?> record, Map<String, List<Long>> framesByPid) {
        String block = blockOf(record);
        String pid = block.substring(0, block.indexOf('['));
        long blockStart = Math.floorDiv(record.getTimestamp(), BLOCK);
        for (String stamp : block.substring(block.indexOf('[') + 1, block.indexOf(']')).split(",")) {
            long ts = Long.parseLong(stamp);
            assertEquals(blockStart, Math.floorDiv(ts, BLOCK), "frames of two blocks in one");
            framesByPid.computeIfAbsent(pid, ignored -> new ArrayList<>()).add(ts);
        }
    }

    @Test
    void noBlockIsBehindAWatermarkForwardedBeforeItAndEveryFrameIsEmittedOnceInOrder() throws Exception {
        Random random = new Random(24);
        Map<String, List<Long>> sent = new HashMap<>();
        Map<String, List<Long>> emitted = new HashMap<>();
        long forwarded = Long.MIN_VALUE;
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness = opened(null)) {
            long watermark = Long.MIN_VALUE;
            long[] next = new long[3];
            for (int step = 0; step < 2_000; step++) {
                int device = random.nextInt(3);
                String pid = "dev" + device;
                // Frames on time (after the input watermark), sometimes skipping ahead, out of order by a little.
                long ts = Math.max(next[device] + random.nextInt(3_000) - 1_000, watermark + 1);
                next[device] = Math.max(next[device], ts + 1_000);
                sent.computeIfAbsent(pid, ignored -> new ArrayList<>()).add(ts);
                harness.processElement(frame(pid, ts));
                if (random.nextInt(4) == 0) {
                    long lowest = Math.min(next[0], Math.min(next[1], next[2]));
                    watermark = Math.max(watermark, lowest - random.nextInt(4_000));
                    harness.processWatermark(watermark);
                }
                for (Object element : harness.getOutput()) {
                    if (element instanceof Watermark) {
                        long mark = ((Watermark) element).getTimestamp();
                        assertTrue(mark > forwarded, "watermarks increase");
                        forwarded = mark;
                        continue;
                    }
                    StreamRecord<?> record = (StreamRecord<?>) element;
                    assertTrue(record.getTimestamp() > forwarded, "a block behind the forwarded watermark");
                    addFramesOf(record, emitted);
                }
                harness.getOutput().clear();
            }
            harness.processWatermark(Long.MAX_VALUE);
            for (Object element : harness.getOutput()) {
                if (element instanceof StreamRecord) {
                    addFramesOf((StreamRecord<?>) element, emitted);
                }
            }
        }
        assertEquals(sent, emitted);
    }

    @Test
    void aPendingBlockInACheckpointIsEmittedIntactAfterTheRestore() throws Exception {
        // Its frames came after the last watermark and before the barrier, then the device went silent.
        OperatorSubtaskState snapshot;
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> before = opened(null)) {
            before.processWatermark(500);
            before.processElement(frame("dev", 1_000));
            before.processElement(frame("dev", 2_000));
            outputOf(before);
            snapshot = before.snapshot(1L, 1L);
        }
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> after = opened(snapshot)) {
            after.processWatermark(60_000);
            assertEquals(List.of("dev[1000,2000]@1000", "W55000"), outputOf(after));
        }
    }

    @Test
    void twoDevicesBlocksDoNotMix() throws Exception {
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness = opened(null)) {
            for (long ts = 0; ts < 5_000; ts += 1_000) {
                harness.processElement(frame("a", ts));
                if (ts < 3_000) {
                    harness.processElement(frame("b", ts + 500));
                }
            }
            assertEquals(List.of("a[0,1000,2000,3000,4000]@0"), outputOf(harness));
            harness.processElement(frame("a", 5_000)); // a's next block: b's stays pending
            harness.processWatermark(4_999);
            assertEquals(List.of("b[500,1500,2500]@500", "W-1"), outputOf(harness));
        }
    }

    @Test
    void theBlockPickleHasThisExactLayout() {
        // pickle.loads(bytes) == ("p\u00e9", [(-1, 250.0, b"\x01\x02")]) in Python (checked with pickletools).
        byte[] expected = {
            (byte) 0x80, 3, // PROTO 3
            'X', 3, 0, 0, 0, 'p', (byte) 0xc3, (byte) 0xa9, // BINUNICODE "pé" (3 UTF-8 bytes)
            ']', '(', // EMPTY_LIST, MARK
            (byte) 0x8a, 8, -1, -1, -1, -1, -1, -1, -1, -1, // LONG1 8 bytes: -1
            'G', 0x40, 0x6f, 0x40, 0, 0, 0, 0, 0, // BINFLOAT big-endian 250.0
            'B', 2, 0, 0, 0, 1, 2, // BINBYTES b"\x01\x02"
            (byte) 0x87, 'e', (byte) 0x86, '.', // TUPLE3, APPENDS, TUPLE2, STOP
        };
        assertArrayEquals(expected, FrameBlocks.pickledBlock("p\u00e9", List.of(Tuple3.of(-1L, 250.0, new byte[] {1, 2}))));
    }

    @Test
    void aBlockMustLastAtLeastOneMillisecond() {
        assertThrows(IllegalArgumentException.class, () -> new FrameBlocks(0));
    }
}
