package io.ecgflinkanon.connectors;

import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkGeneratorSupplier;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;

/**
 * Watermarks of the global-model stream that the job reads back from ecg-model-updates: always
 * Long.MAX_VALUE, from the first periodic emit on.
 *
 * <p>The model stream is the broadcast input of the anomaly detector, a two-input operator whose
 * watermark is the minimum of both inputs. Global updates are produced only after the data's event
 * time has passed their round, so if their own timestamps drove a watermark the data would wait for
 * them and they for the data. The detector never uses event time to decide which global model to
 * use (it names the round by the device's join time and waits for it), so this input must simply
 * never hold event time back: it contributes "no constraint" instead of idling out after a timeout.
 */
public class ModelStreamWatermarks<T> implements WatermarkStrategy<T> {
    private static final long serialVersionUID = 1L;

    @Override
    public WatermarkGenerator<T> createWatermarkGenerator(WatermarkGeneratorSupplier.Context context) {
        return new WatermarkGenerator<T>() {
            @Override
            public void onEvent(T event, long eventTimestamp, WatermarkOutput output) {}

            @Override
            public void onPeriodicEmit(WatermarkOutput output) {
                output.emitWatermark(new Watermark(Long.MAX_VALUE));
            }
        };
    }
}
