package io.ecgflinkanon.connectors;

import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkGeneratorSupplier;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;

/**
 * Watermarks of the global-model stream that the job reads back from ecg-model-updates: none. The
 * stream marks itself idle at every periodic emit, from the first one on.
 *
 * <p>The model stream is the broadcast input of the anomaly detector, a two-input operator whose
 * watermark is the minimum over its <em>active</em> inputs. Global updates are produced only after the
 * data's event time has passed their round, so if their own timestamps drove a watermark the data
 * would wait for them and they for the data. The detector never uses event time to decide which
 * global model to use (it names the round by the device's join time and waits for it), so this input
 * must never constrain event time: an idle input is left out of the minimum, and the detector's
 * event time is the data's alone. (An earlier version emitted Long.MAX_VALUE instead; whenever the
 * data input went idle -- a quiet stretch, a drained backlog -- that value became the detector's
 * watermark, the FedAvg aggregator took every future round for closed and published no global
 * update again: tests/integration/test_event_time.py.) Records still flow while the input is idle;
 * idleness only takes the input out of the watermark.
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
                output.markIdle();
            }
        };
    }
}
