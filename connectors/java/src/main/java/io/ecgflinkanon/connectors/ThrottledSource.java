package io.ecgflinkanon.connectors;

import java.util.Collection;
import org.apache.flink.api.connector.source.Source;
import org.apache.flink.api.connector.source.SourceEvent;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.api.connector.source.SourceSplit;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimitedSourceReader;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimiter;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimiterStrategy;

/**
 * A source (here: the KafkaSource) whose readers emit at most {@code recordsPerSecond} records per second
 * over the whole job: each of the job's {@code p} readers gets {@code recordsPerSecond / p}
 * ({@link RateLimiterStrategy#perSecond}; Flink 2.0's KafkaSource has no rate limiter of its own). The
 * reader asks the limiter before each record it emits and reports "nothing available" until the limiter
 * grants the next one, so records are never dropped or reordered: a slower source backs the broker's
 * records up in Kafka (consumer lag), and checkpoints run between records as usual. Enumerator, splits
 * and their serializers are the wrapped source's, so checkpoints of a throttled and an unthrottled job
 * restore into each other (the throttle changes with stop + resume).
 *
 * <p>A reader gets its share whether or not it has partitions: with more readers than partitions, or
 * partitions unevenly spread, the job reads below the limit.
 */
public class ThrottledSource<T, SplitT extends SourceSplit, EnumChkT> extends ForwardingSource<T, SplitT, EnumChkT> {
    private static final long serialVersionUID = 1L;

    private final double recordsPerSecond;

    public ThrottledSource(Source<T, SplitT, EnumChkT> inner, double recordsPerSecond) {
        super(inner);
        if (!(recordsPerSecond > 0)) {
            throw new IllegalArgumentException("recordsPerSecond must be > 0, got " + recordsPerSecond);
        }
        this.recordsPerSecond = recordsPerSecond;
    }

    public double getRecordsPerSecond() {
        return recordsPerSecond;
    }

    @Override
    public SourceReader<T, SplitT> createReader(SourceReaderContext context) throws Exception {
        return new ThrottledReader<>(
                inner.createReader(context),
                RateLimiterStrategy.perSecond(recordsPerSecond).createRateLimiter(context.currentParallelism()));
    }

    /** Flink's RateLimitedSourceReader, passing on what it does not: split pausing (watermark alignment)
     * and source events. */
    static final class ThrottledReader<E, S extends SourceSplit> extends RateLimitedSourceReader<E, S> {
        private final SourceReader<E, S> reader;

        ThrottledReader(SourceReader<E, S> reader, RateLimiter limiter) {
            super(reader, limiter);
            this.reader = reader;
        }

        @Override
        public void handleSourceEvents(SourceEvent event) {
            reader.handleSourceEvents(event);
        }

        @Override
        public void pauseOrResumeSplits(Collection<String> pause, Collection<String> resume) {
            reader.pauseOrResumeSplits(pause, resume);
        }

        @Override
        public void notifyCheckpointAborted(long checkpointId) throws Exception {
            reader.notifyCheckpointAborted(checkpointId);
        }
    }
}
