package io.ecgflinkanon.connectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.stream.Collectors;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.operators.TimestampsAndWatermarksOperatorFactory;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.runtime.watermarkstatus.WatermarkStatus;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.junit.jupiter.api.Test;

/** The model stream's watermark strategy, run by Flink's own timestamps-and-watermarks operator. */
class ModelStreamWatermarksTest {
    private static final long INTERVAL = 50;

    @Test
    void isIdleFromTheFirstPeriodicEmitAndNeverEmitsAWatermark() throws Exception {
        try (OneInputStreamOperatorTestHarness<String, String> harness = new OneInputStreamOperatorTestHarness<>(
                new TimestampsAndWatermarksOperatorFactory<>(new ModelStreamWatermarks<String>(), true))) {
            harness.getExecutionConfig().setAutoWatermarkInterval(INTERVAL);
            harness.open();
            harness.processElement(new StreamRecord<>("round-1", 1_000));
            harness.setProcessingTime(INTERVAL);
            // Records keep flowing while the input is idle, even with timestamps far in the future.
            harness.processElement(new StreamRecord<>("round-2", Long.MAX_VALUE - 1));
            for (long t = 2 * INTERVAL; t <= 20 * INTERVAL; t += INTERVAL) {
                harness.setProcessingTime(t);
            }
            List<Object> output = List.copyOf(harness.getOutput());
            assertFalse(output.stream().anyMatch(element -> element instanceof Watermark),
                    "the model stream must never drive event time: " + output);
            List<Object> statuses = output.stream()
                    .filter(element -> element instanceof WatermarkStatus)
                    .collect(Collectors.toList());
            assertFalse(statuses.isEmpty(), "marks itself idle at the first periodic emit");
            assertTrue(statuses.stream().allMatch(status -> ((WatermarkStatus) status).isIdle()), statuses.toString());
            List<Object> records = output.stream()
                    .filter(element -> element instanceof StreamRecord)
                    .map(element -> ((StreamRecord<?>) element).getValue())
                    .collect(Collectors.toList());
            assertEquals(List.of("round-1", "round-2"), records);
        }
    }
}
