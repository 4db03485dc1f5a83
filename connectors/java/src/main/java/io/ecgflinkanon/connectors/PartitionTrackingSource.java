package io.ecgflinkanon.connectors;

import java.util.Collection;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.apache.flink.api.connector.source.ReaderOutput;
import org.apache.flink.api.connector.source.Source;
import org.apache.flink.api.connector.source.SourceEvent;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.api.connector.source.SourceSplit;
import org.apache.flink.connector.kafka.source.split.KafkaPartitionSplit;
import org.apache.flink.core.io.InputStatus;

/**
 * The KafkaSource with readers that record which partitions they were given and from which offset
 * ({@link AssignedPartitions}), so that {@link EventTimeProgress} can hold event time for a partition that has not
 * delivered a record yet (issue 19: a throttled or starved reader took partitions with unread records for idle).
 * Everything else is the wrapped reader's.
 */
public class PartitionTrackingSource<T, SplitT extends SourceSplit, EnumChkT>
        extends ForwardingSource<T, SplitT, EnumChkT> {
    private static final long serialVersionUID = 1L;

    public PartitionTrackingSource(Source<T, SplitT, EnumChkT> inner) {
        super(inner);
    }

    @Override
    public SourceReader<T, SplitT> createReader(SourceReaderContext context) throws Exception {
        return new TrackingReader<>(inner.createReader(context));
    }

    static final class TrackingReader<E, S extends SourceSplit> implements SourceReader<E, S> {
        private final SourceReader<E, S> reader;

        TrackingReader(SourceReader<E, S> reader) {
            this.reader = reader;
        }

        @Override
        public void addSplits(List<S> splits) {
            for (S split : splits) {
                if (split instanceof KafkaPartitionSplit) {
                    KafkaPartitionSplit kafka = (KafkaPartitionSplit) split;
                    AssignedPartitions.add(kafka.getTopic() + "#" + kafka.getPartition(), kafka.getStartingOffset());
                }
            }
            reader.addSplits(splits);
        }

        @Override
        public void start() {
            reader.start();
        }

        @Override
        public InputStatus pollNext(ReaderOutput<E> output) throws Exception {
            return reader.pollNext(output);
        }

        @Override
        public List<S> snapshotState(long checkpointId) {
            return reader.snapshotState(checkpointId);
        }

        @Override
        public CompletableFuture<Void> isAvailable() {
            return reader.isAvailable();
        }

        @Override
        public void notifyNoMoreSplits() {
            reader.notifyNoMoreSplits();
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
        public void notifyCheckpointComplete(long checkpointId) throws Exception {
            reader.notifyCheckpointComplete(checkpointId);
        }

        @Override
        public void notifyCheckpointAborted(long checkpointId) throws Exception {
            reader.notifyCheckpointAborted(checkpointId);
        }

        @Override
        public void close() throws Exception {
            AssignedPartitions.clear();
            reader.close();
        }
    }
}
