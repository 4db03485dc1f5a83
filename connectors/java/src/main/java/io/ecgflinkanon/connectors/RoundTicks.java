package io.ecgflinkanon.connectors;

import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;

/**
 * The event-time clock of the FedAvg aggregator, as records: drops every input record and emits the
 * watermark itself as a record ({@code Long}, right after forwarding it) whenever it reaches a round's
 * close time ({@code r * updateMillis + graceMillis - 1}, federated/rounds.py) for a round it had not
 * reached before, and at the first watermark after the operator opens.
 *
 * <p>Why not event-time timers: the aggregator is a Python function, and PyFlink hands the timers a
 * Python function registers to the JVM after the bundle that registered them. A checkpoint taken in
 * between holds the aggregator's open rounds but no timer for them; restored from it with nothing left
 * to read, the job never published those rounds, and the devices waiting for them waited forever
 * (tests/integration/test_event_time.py, issue 19). These ticks are derived from the watermark alone,
 * hold no state and are emitted again after every restore, so a restored aggregator closes every round
 * the watermark allows as soon as the first watermark arrives.
 */
public class RoundTicks<T> extends AbstractStreamOperator<Long> implements OneInputStreamOperator<T, Long> {
    private static final long serialVersionUID = 1L;

    private final long updateMillis;
    private final long graceMillis;
    private transient long lastRound;
    private transient boolean ticked;

    public RoundTicks(long updateMillis, long graceMillis) {
        if (updateMillis < 1 || graceMillis < 1 || graceMillis >= updateMillis) {
            throw new IllegalArgumentException("need 0 < graceMillis < updateMillis");
        }
        this.updateMillis = updateMillis;
        this.graceMillis = graceMillis;
    }

    /** The newest round whose close time the watermark has reached (RoundClock arithmetic). */
    private long closableRound(long watermark) {
        return Math.floorDiv(watermark + 1 - graceMillis, updateMillis);
    }

    @Override
    public void processElement(StreamRecord<T> element) {
        // Only the watermark matters here.
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        super.processWatermark(mark);
        long watermark = mark.getTimestamp();
        if (watermark == Long.MIN_VALUE) {
            return;
        }
        long round = closableRound(watermark);
        if (!ticked || round > lastRound) {
            ticked = true;
            lastRound = round;
            output.collect(new StreamRecord<>(watermark));
        }
    }
}
