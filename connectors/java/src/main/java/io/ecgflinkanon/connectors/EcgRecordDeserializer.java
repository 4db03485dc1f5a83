package io.ecgflinkanon.connectors;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * Hands every Kafka record to Python untouched: (topic, partition, offset, timestamp, value bytes).
 *
 * <p>Value-only deserializers lose partition/offset (needed for the dead-letter contract) and
 * SimpleStringSchema silently replaces invalid UTF-8. Validation happens in Python so that no input
 * can fail the source: this class never throws on record content.
 */
public class EcgRecordDeserializer implements KafkaRecordDeserializationSchema<Row> {
    private static final long serialVersionUID = 1L;
    private static final byte[] EMPTY = new byte[0];

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Row> out) {
        byte[] value = record.value() == null ? EMPTY : record.value();
        out.collect(Row.of(record.topic(), record.partition(), record.offset(), record.timestamp(), value));
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return Types.ROW_NAMED(
                new String[] {"topic", "partition", "offset", "timestamp", "value"},
                Types.STRING,
                Types.INT,
                Types.LONG,
                Types.LONG,
                Types.PRIMITIVE_ARRAY(Types.BYTE));
    }
}
