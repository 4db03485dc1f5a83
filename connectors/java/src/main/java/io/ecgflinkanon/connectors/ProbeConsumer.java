package io.ecgflinkanon.connectors;

import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * The consumer that asks the broker whether a partition has records after a position (liveness guard, end check):
 * read_committed, so transaction markers and aborted records do not count; one record of at most one byte per
 * poll, since only "is there one" matters; no group and no commits, so the job's offsets are never touched.
 */
final class ProbeConsumer {
    private ProbeConsumer() {}

    static KafkaConsumer<byte[], byte[]> create(String bootstrapServers, Map<String, String> clientProperties,
            String clientId) {
        Properties properties = new Properties();
        properties.putAll(clientProperties);
        properties.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
        properties.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        properties.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        properties.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "1");
        properties.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, "1");
        properties.put(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, "1");
        properties.put(ConsumerConfig.CLIENT_ID_CONFIG, clientId);
        return new KafkaConsumer<>(properties, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }
}
