package io.ecgflinkanon.connectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.connector.source.ReaderOutput;
import org.apache.flink.api.connector.source.SourceOutput;
import org.apache.flink.api.connector.source.lib.NumberSequenceSource;
import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceSplit;
import java.util.concurrent.CompletableFuture;
import org.apache.flink.core.io.InputStatus;
import org.junit.jupiter.api.Test;

class ThrottledSourceTest {

    static final class Split implements SourceSplit {
        @Override public String splitId() { return "0"; }
    }

    /** A reader of the integers 0..n-1, one per pollNext. */
    static final class Numbers implements SourceReader<Integer, Split> {
        private final int n;
        private int next;

        Numbers(int n) { this.n = n; }
        @Override public void start() {}
        @Override public InputStatus pollNext(ReaderOutput<Integer> output) {
            if (next >= n) {
                return InputStatus.END_OF_INPUT;
            }
            output.collect(next++);
            return next < n ? InputStatus.MORE_AVAILABLE : InputStatus.END_OF_INPUT;
        }
        @Override public List<Split> snapshotState(long checkpointId) { return List.of(); }
        @Override public CompletableFuture<Void> isAvailable() { return CompletableFuture.completedFuture(null); }
        @Override public void addSplits(List<Split> splits) {}
        @Override public void notifyNoMoreSplits() {}
        @Override public void close() {}
    }

    /** Collects what a reader emits. */
    static final class Collect implements ReaderOutput<Integer> {
        final List<Integer> records = new ArrayList<>();

        @Override public void collect(Integer record) { records.add(record); }
        @Override public void collect(Integer record, long timestamp) { records.add(record); }
        @Override public void emitWatermark(Watermark watermark) {}
        @Override public void markIdle() {}
        @Override public void markActive() {}
        @Override public SourceOutput<Integer> createOutputForSplit(String splitId) { return this; }
        @Override public void releaseOutputForSplit(String splitId) {}
    }

    @Test
    void emitsEveryRecordInOrderAtTheRate() throws Exception {
        Numbers reader = new Numbers(60);
        ThrottledSource.ThrottledReader<Integer, Split> throttled = new ThrottledSource.ThrottledReader<>(
                reader, org.apache.flink.api.connector.source.util.ratelimit.RateLimiterStrategy.perSecond(40)
                        .createRateLimiter(1));
        throttled.start();
        Collect out = new Collect();
        long start = System.nanoTime();
        while (out.records.size() < 60) {
            throttled.isAvailable().get();
            throttled.pollNext(out);
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        List<Integer> expected = new ArrayList<>();
        for (int i = 0; i < 60; i++) {
            expected.add(i);
        }
        assertEquals(expected, out.records); // nothing dropped, nothing reordered
        // 60 records at 40/s: ~1.5 s (Guava grants the first at once); unthrottled it takes microseconds.
        assertTrue(seconds > 1.2 && seconds < 3.0, "took " + seconds + " s");
        throttled.close();
    }

    @Test
    void keepsTheWrappedSourcesTypeAndSerializers() {
        NumberSequenceSource numbers = new NumberSequenceSource(0, 9);
        ThrottledSource<Long, NumberSequenceSource.NumberSequenceSplit, ?> source = new ThrottledSource<>(numbers, 5.0);
        assertEquals(Types.LONG, source.getProducedType());
        assertEquals(numbers.getBoundedness(), source.getBoundedness());
        assertEquals(numbers.getSplitSerializer().getClass(), source.getSplitSerializer().getClass());
        assertThrows(IllegalArgumentException.class, () -> new ThrottledSource<>(numbers, 0.0));
    }
}
