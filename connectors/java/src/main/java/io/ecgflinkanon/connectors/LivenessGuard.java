package io.ecgflinkanon.connectors;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Liveness guard, chained after the Kafka source (records {@code Row(topic, partition, offset, timestamp,
 * value)}): fails the task, so that the restart strategy recovers the job from its last checkpoint, when
 * the input has unread records but no record has left the source for {@code timeoutMillis} (issue 19: a
 * job that stopped making progress while it reported RUNNING and completed checkpoints).
 *
 * <p>The check runs on its own daemon thread: a stalled chain (a Python operator that does not return,
 * a source blocked by backpressure) may hold the task thread, which then never runs a timer. Only when
 * nothing has been emitted for the timeout does the thread look at the broker: per partition this
 * subtask has read, it seeks a probe consumer to the offset after the last emitted record and polls; a
 * record there is an unread record (transaction markers are skipped by the consumer, so a quiet topic
 * written transactionally never counts as lag). A quiet stream, or a long idle hour, has no record
 * after the last one read: the guard never fires on it. Partitions this subtask has not read a record
 * from yet are not checked (a stall before the first record is not detected).
 *
 * <p>Gauges (operator metric group {@code ecg}): {@code liveness_last_progress_age_ms}, {@code
 * liveness_unread_records} (1 when the last probe found an unread record, 0 when it found none, -1
 * before any probe), {@code event_time_lag_ms} (wall clock minus the last watermark forwarded) and {@code
 * input_lag_records} (records in the broker after the last one this subtask emitted, summed over the
 * partitions it has read; the broker's last stable offsets, so a transaction marker counts as one; -1
 * before the first look or while the broker does not answer), refreshed every few seconds by the same thread.
 * The Kafka source's own metrics give no such figure here (it commits no offsets to its group).
 */
public class LivenessGuard extends AbstractStreamOperator<Row> implements OneInputStreamOperator<Row, Row> {
    private static final long serialVersionUID = 1L;
    private static final Logger LOG = LoggerFactory.getLogger(LivenessGuard.class);

    private final String bootstrapServers;
    private final HashMap<String, String> clientProperties;
    private final long timeoutMillis;
    private final String stuckOperators;

    private transient Map<TopicPartition, Long> lastOffsets;
    private transient volatile long lastProgressMillis;
    private transient volatile long lastWatermark;
    private transient volatile int unreadRecords;
    private transient volatile long inputLagRecords;
    private transient volatile boolean running;
    private transient Thread watchdog;

    public LivenessGuard(String bootstrapServers, long timeoutMillis, String stuckOperators) {
        this(bootstrapServers, Collections.emptyMap(), timeoutMillis, stuckOperators);
    }

    /**
     * @param clientProperties the job's Kafka client security properties (security.protocol, SASL, TLS), given to
     *     the probe consumer as to the source
     */
    public LivenessGuard(String bootstrapServers, Map<String, String> clientProperties, long timeoutMillis,
                         String stuckOperators) {
        this.bootstrapServers = bootstrapServers;
        this.clientProperties = new HashMap<>(clientProperties);
        this.timeoutMillis = timeoutMillis;
        this.stuckOperators = stuckOperators;
    }

    @Override
    public void open() throws Exception {
        super.open();
        lastOffsets = new ConcurrentHashMap<>();
        lastProgressMillis = System.currentTimeMillis();
        lastWatermark = Long.MIN_VALUE;
        unreadRecords = -1;
        inputLagRecords = -1;
        var metrics = getRuntimeContext().getMetricGroup().addGroup("ecg");
        metrics.gauge("liveness_last_progress_age_ms", () -> System.currentTimeMillis() - lastProgressMillis);
        metrics.gauge("liveness_unread_records", () -> unreadRecords);
        metrics.gauge("input_lag_records", () -> inputLagRecords);
        metrics.gauge("event_time_lag_ms",
                () -> lastWatermark == Long.MIN_VALUE ? -1L : System.currentTimeMillis() - lastWatermark);
        if (timeoutMillis <= 0) {
            return;
        }
        running = true;
        watchdog = new Thread(this::watch, "liveness-guard " + getRuntimeContext().getTaskInfo().getTaskNameWithSubtasks());
        watchdog.setDaemon(true);
        watchdog.start();
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row row = element.getValue();
        Object topic = row.getField(0);
        Object partition = row.getField(1);
        Object offset = row.getField(2);
        if (topic != null && partition != null && offset != null) {
            lastOffsets.put(new TopicPartition(topic.toString(), ((Number) partition).intValue()),
                    ((Number) offset).longValue());
        }
        lastProgressMillis = System.currentTimeMillis();
        output.collect(element);
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        lastWatermark = mark.getTimestamp();
        super.processWatermark(mark);
    }

    private void watch() {
        long pause = Math.max(200L, Math.min(timeoutMillis / 4, 5000L));
        KafkaConsumer<byte[], byte[]> probe = null;
        try {
            while (running) {
                Thread.sleep(pause);
                if (lastOffsets.isEmpty()) {
                    continue;
                }
                if (probe == null) {
                    probe = probeConsumer();
                }
                inputLagRecords = lagOf(probe);
                long silentFor = System.currentTimeMillis() - lastProgressMillis;
                if (silentFor < timeoutMillis) {
                    continue;
                }
                TopicPartition unread = firstUnread(probe);
                unreadRecords = unread == null ? 0 : 1;
                // Progress while probing: not a stall.
                if (unread == null || System.currentTimeMillis() - lastProgressMillis < timeoutMillis) {
                    continue;
                }
                String message = String.format(
                        "LIVENESS: no record left the Kafka source for %d s although %s has unread records after "
                                + "offset %d; stuck: %s (or what they wait for). Failing the task so that the job "
                                + "restarts from its last checkpoint (LIVENESS_TIMEOUT_SECONDS=%d).",
                        silentFor / 1000, unread, lastOffsets.get(unread), stuckOperators, timeoutMillis / 1000);
                LOG.error(message);
                running = false;
                getContainingTask().getEnvironment().failExternally(new IllegalStateException(message));
            }
        } catch (InterruptedException interrupted) {
            Thread.currentThread().interrupt();
        } catch (RuntimeException error) {
            LOG.warn("liveness guard stopped checking: {}", error.toString());
        } finally {
            if (probe != null) {
                probe.close(Duration.ofSeconds(1));
            }
        }
    }

    private KafkaConsumer<byte[], byte[]> probeConsumer() {
        return ProbeConsumer.create(bootstrapServers, clientProperties, "ecg-liveness-guard");
    }

    /** Records after the last one this subtask emitted, over the partitions it has read; -1 if unknown. */
    private long lagOf(KafkaConsumer<byte[], byte[]> probe) {
        Map<TopicPartition, Long> read = new HashMap<>(lastOffsets);
        try {
            long lag = 0;
            for (Map.Entry<TopicPartition, Long> end : probe.endOffsets(read.keySet(), Duration.ofSeconds(2)).entrySet()) {
                lag += Math.max(0L, end.getValue() - (read.get(end.getKey()) + 1));
            }
            return lag;
        } catch (KafkaException | IllegalStateException unknown) {
            return -1L;
        }
    }

    /** A partition with a record after the last one this subtask emitted, or null. */
    private TopicPartition firstUnread(KafkaConsumer<byte[], byte[]> probe) {
        List<TopicPartition> assigned = new ArrayList<>(lastOffsets.keySet());
        for (TopicPartition partition : assigned) {
            probe.assign(Collections.singletonList(partition));
            probe.seek(partition, lastOffsets.get(partition) + 1);
            ConsumerRecords<byte[], byte[]> records = probe.poll(Duration.ofSeconds(2));
            if (!records.isEmpty()) {
                return partition;
            }
        }
        return null;
    }

    @Override
    public void close() throws Exception {
        running = false;
        if (watchdog != null) {
            watchdog.interrupt();
        }
        super.close();
    }
}
