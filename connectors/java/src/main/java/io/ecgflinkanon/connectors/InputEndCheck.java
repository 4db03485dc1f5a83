package io.ecgflinkanon.connectors;

import java.io.Serializable;
import java.time.Duration;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;

/**
 * Asks the broker whether every partition has been read to its end: the confirmation {@link EventTimeProgress}
 * needs before it treats an all-idle source as "nothing more to read". A source also goes idle when the broker
 * is unreachable (a broker outage), and then there may be any amount left to read (issue 20, item 4).
 *
 * <p>{@link #unread} names the partitions with a record after the last one read; a partition counts as read
 * to its end only on positive evidence: the broker's last stable offset is at the next offset to read, or a
 * consumer seeked there moves to that end without returning a record (transaction markers only). {@code
 * null}: unknown (broker unreachable, timeouts). Runs on a thread of its own, never on the task thread.
 */
public class InputEndCheck implements Serializable {
    private static final long serialVersionUID = 1L;
    private static final Duration TIMEOUT = Duration.ofSeconds(3);

    private final String bootstrapServers;
    private final HashMap<String, String> clientProperties;
    private transient KafkaConsumer<byte[], byte[]> consumer;

    /** {@code clientProperties}: the job's Kafka client security properties, as the source gets them. */
    public InputEndCheck(String bootstrapServers, Map<String, String> clientProperties) {
        this.bootstrapServers = bootstrapServers;
        this.clientProperties = new HashMap<>(clientProperties);
    }

    /**
     * {@code nextOffsets}: per partition ("topic#partition") the offset after the last record read. Returns the
     * partitions with a record after it (empty: every one is read to its end), or null if the broker cannot tell.
     */
    public Set<String> unread(Map<String, Long> nextOffsets) {
        Set<String> unread = new HashSet<>();
        if (nextOffsets.isEmpty()) {
            return unread;
        }
        try {
            if (consumer == null) {
                consumer = newConsumer();
            }
            Map<TopicPartition, Long> next = new HashMap<>();
            for (Map.Entry<String, Long> entry : nextOffsets.entrySet()) {
                next.put(topicPartition(entry.getKey()), entry.getValue());
            }
            Map<TopicPartition, Long> ends = consumer.endOffsets(next.keySet(), TIMEOUT);
            for (Map.Entry<TopicPartition, Long> partition : next.entrySet()) {
                Long end = ends.get(partition.getKey());
                if (end == null) {
                    return null;
                }
                if (end <= partition.getValue()) {
                    continue;
                }
                consumer.assign(Collections.singletonList(partition.getKey()));
                consumer.seek(partition.getKey(), partition.getValue());
                if (!consumer.poll(TIMEOUT).isEmpty()) {
                    unread.add(partition.getKey().topic() + "#" + partition.getKey().partition());
                } else if (consumer.position(partition.getKey(), TIMEOUT) < end) {
                    return null; // neither a record nor the end: the broker did not answer the fetch
                }
            }
            return unread;
        } catch (KafkaException | IllegalStateException unknown) {
            return null;
        }
    }

    /** The starting offset of a split that reads a partition from its beginning (Kafka connector's sentinel). */
    static final long EARLIEST = -2L;
    /** The starting offset of a split that reads a partition from its end on (Kafka connector's sentinel). */
    static final long LATEST = -1L;

    /**
     * {@code offsets} with the connector's sentinels for "from the beginning" and "from the end" replaced by the
     * broker's offsets (the source reader resolves them the same way when it starts); null if the broker cannot
     * tell. Any other negative offset is not one this check can judge: an IllegalArgumentException.
     */
    public Map<String, Long> resolveStarts(Map<String, Long> offsets) {
        Map<String, Long> resolved = new HashMap<>(offsets);
        Map<TopicPartition, String> earliest = new HashMap<>();
        Map<TopicPartition, String> latest = new HashMap<>();
        for (Map.Entry<String, Long> entry : offsets.entrySet()) {
            long offset = entry.getValue();
            if (offset >= 0) {
                continue;
            }
            if (offset != EARLIEST && offset != LATEST) {
                throw new IllegalArgumentException("cannot resolve starting offset " + offset + " of " + entry.getKey());
            }
            TopicPartition partition = topicPartition(entry.getKey());
            (offset == EARLIEST ? earliest : latest).put(partition, entry.getKey());
        }
        if (earliest.isEmpty() && latest.isEmpty()) {
            return resolved;
        }
        try {
            if (consumer == null) {
                consumer = newConsumer();
            }
            if (!earliest.isEmpty()) {
                consumer.beginningOffsets(earliest.keySet(), TIMEOUT)
                        .forEach((partition, offset) -> resolved.put(earliest.get(partition), offset));
            }
            if (!latest.isEmpty()) {
                consumer.endOffsets(latest.keySet(), TIMEOUT)
                        .forEach((partition, offset) -> resolved.put(latest.get(partition), offset));
            }
        } catch (KafkaException | IllegalStateException unknown) {
            return null;
        }
        for (long offset : resolved.values()) {
            if (offset < 0) {
                return null;
            }
        }
        return resolved;
    }

    /** "topic#partition", the key EventTimeProgress uses, as Kafka's TopicPartition. */
    private static TopicPartition topicPartition(String key) {
        int cut = key.lastIndexOf('#');
        return new TopicPartition(key.substring(0, cut), Integer.parseInt(key.substring(cut + 1)));
    }

    private KafkaConsumer<byte[], byte[]> newConsumer() {
        return ProbeConsumer.create(bootstrapServers, clientProperties, "ecg-event-time-end-check");
    }

    public void close() {
        if (consumer != null) {
            consumer.close(Duration.ofSeconds(1));
            consumer = null;
        }
    }
}
