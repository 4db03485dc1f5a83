package io.ecgflinkanon.connectors;

import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;

/**
 * Wakes the FedAvg aggregator with a record whenever event time lets a federated round close.
 *
 * <p>Runs on the aggregator's own input (pickled Python objects, {@code byte[]}) right before it is keyed:
 * it forwards every record and watermark unchanged and, right after a watermark that makes a further round
 * closable (close time {@code r * updateMillis + graceMillis}), and after the first watermark it sees
 * (at start and after every restore), it emits one tick: a pickled Python {@code int} holding that
 * watermark. The aggregator answers a tick by closing what its own watermark allows and registering again
 * the event-time timer of every open round.
 *
 * <p>Why: the aggregator closes rounds on event-time timers registered by Python code, and PyFlink can
 * leave out of a checkpoint a timer registered in the bundle before the barrier. A restored aggregator
 * with nothing left to read then never published its round (issue 19). A tick is a record, so it travels
 * in order behind the watermark that caused it, on the same channel as the signals, and is replayed with
 * them after a restore; it needs no state of its own (the first watermark after a restore always ticks).
 * The tick's value is not trusted to close anything: with several upstream subtasks only the aggregator's
 * own watermark (their minimum) is safe.
 */
public class RoundTicks extends AbstractStreamOperator<byte[]> implements OneInputStreamOperator<byte[], byte[]> {
    private static final long serialVersionUID = 1L;
    /** Pickle protocol 2: PROTO 2, LONG1 with 8 bytes (little-endian two's complement), STOP. */
    private static final byte PROTO = (byte) 0x80;
    private static final byte LONG1 = (byte) 0x8a;
    private static final byte STOP = '.';

    private final long updateMillis;
    private final long graceMillis;
    private transient long lastTickedRound;
    private transient boolean ticked;

    public RoundTicks(long updateMillis, long graceMillis) {
        if (updateMillis < 1 || graceMillis < 1 || graceMillis >= updateMillis) {
            throw new IllegalArgumentException("need 1 <= graceMillis < updateMillis");
        }
        this.updateMillis = updateMillis;
        this.graceMillis = graceMillis;
    }

    @Override
    public void open() throws Exception {
        super.open();
        ticked = false;
        lastTickedRound = Long.MIN_VALUE;
    }

    @Override
    public void processElement(StreamRecord<byte[]> element) {
        output.collect(element);
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        super.processWatermark(mark);
        long watermark = mark.getTimestamp();
        // The newest round whose close time the watermark has reached (federated/rounds.py); no overflow
        // at Long.MAX_VALUE since graceMillis >= 1.
        long closable = Math.floorDiv(watermark - graceMillis + 1, updateMillis);
        if (!ticked || closable > lastTickedRound) {
            ticked = true;
            lastTickedRound = closable;
            output.collect(new StreamRecord<>(pickledLong(watermark), watermark));
        }
    }

    /** The pickle of a Python int, as {@code pickle.loads} reads it. */
    static byte[] pickledLong(long value) {
        byte[] out = new byte[13];
        out[0] = PROTO;
        out[1] = 2;
        out[2] = LONG1;
        out[3] = 8;
        for (int i = 0; i < 8; i++) {
            out[4 + i] = (byte) (value >>> (8 * i));
        }
        out[12] = STOP;
        return out;
    }
}
