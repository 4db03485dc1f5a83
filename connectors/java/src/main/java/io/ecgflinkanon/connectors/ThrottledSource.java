package io.ecgflinkanon.connectors;

import java.util.Collection;
import java.util.Set;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.watermark.WatermarkDeclaration;
import org.apache.flink.api.connector.source.Boundedness;
import org.apache.flink.api.connector.source.Source;
import org.apache.flink.api.connector.source.SourceEvent;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.api.connector.source.SourceSplit;
import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimitedSourceReader;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimiter;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimiterStrategy;
import org.apache.flink.api.java.typeutils.ResultTypeQueryable;
import org.apache.flink.core.io.SimpleVersionedSerializer;

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
public class ThrottledSource<T, SplitT extends SourceSplit, EnumChkT>
        implements Source<T, SplitT, EnumChkT>, ResultTypeQueryable<T> {
    private static final long serialVersionUID = 1L;

    private final Source<T, SplitT, EnumChkT> inner;
    private final double recordsPerSecond;

    public ThrottledSource(Source<T, SplitT, EnumChkT> inner, double recordsPerSecond) {
        if (!(recordsPerSecond > 0)) {
            throw new IllegalArgumentException("recordsPerSecond must be > 0, got " + recordsPerSecond);
        }
        this.inner = inner;
        this.recordsPerSecond = recordsPerSecond;
    }

    public double getRecordsPerSecond() {
        return recordsPerSecond;
    }

    @Override
    public Boundedness getBoundedness() {
        return inner.getBoundedness();
    }

    @Override
    public SourceReader<T, SplitT> createReader(SourceReaderContext context) throws Exception {
        return new ThrottledReader<>(
                inner.createReader(context),
                RateLimiterStrategy.perSecond(recordsPerSecond).createRateLimiter(context.currentParallelism()));
    }

    @Override
    public SplitEnumerator<SplitT, EnumChkT> createEnumerator(SplitEnumeratorContext<SplitT> context)
            throws Exception {
        return inner.createEnumerator(context);
    }

    @Override
    public SplitEnumerator<SplitT, EnumChkT> restoreEnumerator(
            SplitEnumeratorContext<SplitT> context, EnumChkT checkpoint) throws Exception {
        return inner.restoreEnumerator(context, checkpoint);
    }

    @Override
    public SimpleVersionedSerializer<SplitT> getSplitSerializer() {
        return inner.getSplitSerializer();
    }

    @Override
    public SimpleVersionedSerializer<EnumChkT> getEnumeratorCheckpointSerializer() {
        return inner.getEnumeratorCheckpointSerializer();
    }

    @Override
    public Set<? extends WatermarkDeclaration> declareWatermarks() {
        return inner.declareWatermarks();
    }

    @Override
    @SuppressWarnings("unchecked")
    public TypeInformation<T> getProducedType() {
        if (inner instanceof ResultTypeQueryable) {
            return ((ResultTypeQueryable<T>) inner).getProducedType();
        }
        throw new IllegalStateException(inner.getClass().getName() + " does not say what type it produces");
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
