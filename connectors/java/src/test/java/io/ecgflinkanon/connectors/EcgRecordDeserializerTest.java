package io.ecgflinkanon.connectors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.common.typeutils.TypeSerializer;
import org.apache.flink.api.common.serialization.SerializerConfigImpl;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.junit.jupiter.api.Test;

/** The source's deserializer hands every record to Python untouched, whatever its bytes. */
class EcgRecordDeserializerTest {
    private static final class ListCollector implements Collector<Row> {
        final List<Row> rows = new ArrayList<>();

        @Override
        public void collect(Row row) {
            rows.add(row);
        }

        @Override
        public void close() {}
    }

    private static ConsumerRecord<byte[], byte[]> kafkaRecord(long offset, long timestamp, byte[] value) {
        ConsumerRecord<byte[], byte[]> record = new ConsumerRecord<>("ecg-raw", 3, offset, "dev".getBytes(), value);
        return new ConsumerRecord<>(record.topic(), record.partition(), record.offset(), timestamp,
                org.apache.kafka.common.record.TimestampType.CREATE_TIME, 3, value == null ? -1 : value.length,
                record.key(), value, record.headers(), record.leaderEpoch());
    }

    private static Row deserialize(ConsumerRecord<byte[], byte[]> record) throws Exception {
        ListCollector out = new ListCollector();
        new EcgRecordDeserializer().deserialize(record, out);
        assertEquals(1, out.rows.size(), "exactly one row per Kafka record");
        return out.rows.get(0);
    }

    @Test
    void badBytesPassUntouchedWithTheirCoordinates() throws Exception {
        byte[] invalidUtf8 = {(byte) 0xff, (byte) 0xfe, 0x00, (byte) 0xc3, 0x28, '{'};
        Row row = deserialize(kafkaRecord(42, 1_763_812_800_000L, invalidUtf8));
        assertEquals("ecg-raw", row.getField(0));
        assertEquals(3, row.getField(1));
        assertEquals(42L, row.getField(2));
        assertEquals(1_763_812_800_000L, row.getField(3));
        assertArrayEquals(invalidUtf8, (byte[]) row.getField(4));
    }

    @Test
    void nullAndEmptyValuesBecomeEmptyBytes() throws Exception {
        assertArrayEquals(new byte[0], (byte[]) deserialize(kafkaRecord(0, 1, null)).getField(4));
        assertArrayEquals(new byte[0], (byte[]) deserialize(kafkaRecord(1, 1, new byte[0])).getField(4));
    }

    @Test
    void producedTypeNamesTheFieldsAndSerializesTheRow() throws Exception {
        TypeInformation<Row> type = new EcgRecordDeserializer().getProducedType();
        assertEquals(Types.ROW_NAMED(new String[] {"topic", "partition", "offset", "timestamp", "value"},
                Types.STRING, Types.INT, Types.LONG, Types.LONG, Types.PRIMITIVE_ARRAY(Types.BYTE)), type);
        byte[] value = {(byte) 0x80, 1, 2};
        Row row = deserialize(kafkaRecord(7, 99, value));
        TypeSerializer<Row> serializer = type.createSerializer(new SerializerConfigImpl());
        DataOutputSerializer bytes = new DataOutputSerializer(64);
        serializer.serialize(row, bytes);
        Row copy = serializer.deserialize(new DataInputDeserializer(bytes.getCopyOfBuffer()));
        assertEquals(row.getField(2), copy.getField(2));
        assertArrayEquals(value, (byte[]) copy.getField(4));
    }
}
