package io.ecgflinkanon.connectors;

import org.apache.flink.runtime.state.VoidNamespace;
import org.apache.flink.runtime.state.VoidNamespaceSerializer;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.InternalTimer;
import org.apache.flink.streaming.api.operators.InternalTimerService;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.operators.Triggerable;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * Decides when each key's tumbling event-time windows close, for the Python k-anonymity windows chained
 * right after it (operators/k_anonymity.py), on their keyed input {@code Row(key, pickled frame)}.
 *
 * <p>Per frame it registers a Java event-time timer at its window's close time ({@code start + window - 1 +
 * lateness}) and forwards the frame. When the watermark reaches a close time it emits, per key with frames in
 * that window and before that watermark, a <b>close</b>: {@code Row(key, pickled int close time)}. A frame
 * whose window's close time the input watermark has already passed is <b>late</b>: it is forwarded as {@code
 * Row(key, pickled 1-tuple (frame bytes,))}, so the Python function dead-letters it without judging by its
 * own watermark (which trails this operator's: a PyFlink operator holds a watermark until its bundle ends).
 *
 * <p>Why (issue 19 item 5): a timer that Python code registers reaches the JVM after the bundle that
 * registered it, so the checkpoint barrier that ends that bundle can miss it; a ward whose last window's
 * frames all came in such a bundle, and then went silent, kept that window in state after a restore. Java
 * timers are registered on the task thread with the frame, so every frame before a barrier has its window's
 * timer in that checkpoint, and the close is a record, replayed like one.
 *
 * <p><b>Paced closing</b> (issue 19 item 4, {@code paceMillis > 0}): when one watermark passes the close times
 * of several windows (a catch-up), it closes one window (the earliest close time, for every key) per step and
 * takes the next step {@code paceMillis} later on the task's mailbox, holding the forwarded watermark at the
 * last close emitted. The chained Python operator ends a bundle at least every {@code PYTHON_BUNDLE_TIME_MS},
 * so a checkpoint barrier waits for about one window's anonymization instead of every window the watermark
 * closed. Steps that close nothing are taken at once; the final watermark (end of a bounded input) closes
 * everything at once. Lateness is judged against the input watermark, so pacing never changes which frames
 * are late. Gauge {@code window_close_lag_ms}: input watermark minus forwarded watermark.
 *
 * <p><b>Text records</b> ({@code textRecords}, for the dead-letter counts per reason, operators/sinks.py
 * CountDeadLetters, on {@code Row(reason, dead-letter JSON)}): a close is the text {@code "window-close:" +
 * close time}, never a dead letter (those are JSON objects), and a late record is not wrapped but moved to the
 * window the input watermark is in (its timestamp becomes the watermark + 1): a late dead letter counts in the
 * window event time was in when it came.
 */
public class WindowCloser extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, Triggerable<Row, VoidNamespace> {
    private static final long serialVersionUID = 1L;
    /** Pickle protocol 3: PROTO 3, BINBYTES (4-byte little-endian length), TUPLE1, STOP. */
    private static final byte PROTO = (byte) 0x80;
    private static final byte BINBYTES = 'B';
    private static final byte TUPLE1 = (byte) 0x85;
    private static final byte STOP = '.';

    private final long windowMillis;
    private final long latenessMillis;
    private final long paceMillis;
    private final boolean textRecords;

    private transient InternalTimerService<VoidNamespace> closeTimers;
    private transient long inputWatermark;
    private transient long forwardedWatermark;
    private transient boolean stepScheduled;
    private transient long closesEmitted;

    /** For the k-anonymity windows: {@code Row(key, pickled frame)}. */
    public WindowCloser(long windowMillis, long latenessMillis, long paceMillis) {
        this(windowMillis, latenessMillis, paceMillis, false);
    }

    /** @param textRecords {@code Row(key, String)} records (see the class comment), else pickled frames */
    public WindowCloser(long windowMillis, long latenessMillis, long paceMillis, boolean textRecords) {
        if (windowMillis < 1 || latenessMillis < 0 || paceMillis < 0) {
            throw new IllegalArgumentException("need windowMillis >= 1, latenessMillis >= 0, paceMillis >= 0");
        }
        this.windowMillis = windowMillis;
        this.latenessMillis = latenessMillis;
        this.paceMillis = paceMillis;
        this.textRecords = textRecords;
    }

    @Override
    public void open() throws Exception {
        super.open();
        closeTimers = getInternalTimerService("window-closes", VoidNamespaceSerializer.INSTANCE, this);
        inputWatermark = Long.MIN_VALUE;
        forwardedWatermark = Long.MIN_VALUE;
        stepScheduled = false;
        closesEmitted = 0;
        getMetricGroup().addGroup("ecg").gauge("window_close_lag_ms", this::closeLagMillis);
    }

    private long closeLagMillis() {
        return inputWatermark == Long.MIN_VALUE ? 0 : Math.max(0, inputWatermark - forwardedWatermark);
    }

    /** The close time of the window holding {@code timestamp}. */
    long closeTimeOf(long timestamp) {
        return timestamp - Math.floorMod(timestamp, windowMillis) + windowMillis - 1 + latenessMillis;
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row keyed = element.getValue();
        long closeTime = closeTimeOf(element.getTimestamp());
        if (closeTime <= inputWatermark) {
            if (!textRecords) {
                output.collect(element.replace(Row.of(keyed.getField(0), lateFrame((byte[]) keyed.getField(1)))));
                return;
            }
            element.setTimestamp(inputWatermark + 1);
            closeTime = closeTimeOf(inputWatermark + 1);
        }
        closeTimers.registerEventTimeTimer(VoidNamespace.INSTANCE, closeTime);
        output.collect(element);
    }

    @Override
    public void onEventTime(InternalTimer<Row, VoidNamespace> timer) {
        closesEmitted++;
        long closeTime = timer.getTimestamp();
        Object close = textRecords ? "window-close:" + closeTime : RoundTicks.pickledLong(closeTime);
        output.collect(new StreamRecord<>(Row.of(timer.getKey().getField(0), close), closeTime));
    }

    @Override
    public void onProcessingTime(InternalTimer<Row, VoidNamespace> timer) {
        // registers none
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        if (mark.getTimestamp() <= inputWatermark) {
            return;
        }
        inputWatermark = mark.getTimestamp();
        // The final watermark does not wait for a scheduled step: the input has ended, and the task may
        // finish before that step's time.
        if (!stepScheduled || inputWatermark == Long.MAX_VALUE) {
            advance();
        }
    }

    /** Moves the forwarded watermark towards the input watermark: one window's closes per step when paced. */
    private void advance() throws Exception {
        stepScheduled = false;
        while (forwardedWatermark < inputWatermark) {
            long target = inputWatermark;
            if (paceMillis > 0 && inputWatermark != Long.MAX_VALUE) {
                long earliest = earliestCloseTime();
                target = Math.min(inputWatermark, Math.max(earliest, forwardedWatermark + 1));
            }
            long before = closesEmitted;
            forwardedWatermark = target;
            super.processWatermark(new Watermark(target));
            if (closesEmitted > before && forwardedWatermark < inputWatermark && paceMillis > 0
                    && earliestCloseTime() <= inputWatermark) {
                stepScheduled = true;
                long now = getProcessingTimeService().getCurrentProcessingTime();
                getProcessingTimeService().registerTimer(now + paceMillis, ignored -> advance());
                return;
            }
        }
    }

    /** The earliest close time still to come (over every key), or Long.MAX_VALUE if none. */
    private long earliestCloseTime() throws Exception {
        long[] earliest = {Long.MAX_VALUE};
        closeTimers.forEachEventTimeTimer((namespace, time) -> earliest[0] = Math.min(earliest[0], time));
        return earliest[0];
    }

    /** The pickle of the Python 1-tuple {@code (frame,)}, {@code frame} a bytes object. */
    static byte[] lateFrame(byte[] frame) {
        byte[] out = new byte[frame.length + 9];
        out[0] = PROTO;
        out[1] = 3;
        out[2] = BINBYTES;
        for (int i = 0; i < 4; i++) {
            out[3 + i] = (byte) (frame.length >>> (8 * i));
        }
        System.arraycopy(frame, 0, out, 7, frame.length);
        out[frame.length + 7] = TUPLE1;
        out[frame.length + 8] = STOP;
        return out;
    }
}
