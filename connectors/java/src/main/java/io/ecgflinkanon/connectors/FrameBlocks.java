package io.ecgflinkanon.connectors;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple3;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.MetricGroup;
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
 * Gathers each device's 1 s frames into event-time blocks of {@code blockMillis}, so the cardio branch's
 * Python detector (operators/anomaly_models.py) runs once per block instead of once per frame (issue 24:
 * per-element PyFlink overhead, keyed-state (de)serialization and per-call numpy/scipy overhead dominated).
 * Runs keyed by {@code Row(pid)}, right after {@code keyBy}.
 *
 * <p>Input {@code Row(pid String, tsMs Long, fs Double, payload byte[])}. With {@code fs > 0} it is a
 * <b>frame</b>: {@code payload} holds its samples as little-endian float64, so it ends at {@code tsMs +
 * round(1000 * samples / fs)}. With {@code fs <= 0} it is a <b>pass-through</b> record (an already pickled
 * Python object), emitted at once as {@code Row(pid, payload)} with its own timestamp; it never touches the
 * pending block.
 *
 * <p>A frame belongs to the block {@code [floorDiv(tsMs, blockMillis) * blockMillis, + blockMillis)}. Per key
 * at most one block is pending, in keyed state (so it is checkpointed, with its Java timer). A frame of
 * another block first releases the pending one (arrival order is kept; a straggler of an older block starts a
 * block of its own). A block is emitted when a frame reaches its end, when the input watermark reaches its
 * close time {@code end - 1}, or at once if that close time is already behind the input watermark (a late
 * frame waits for nothing). The output is {@code Row(pid, pickle)} at the block's first frame's timestamp; the
 * pickle (protocol 3, no memo) is the Python value {@code (pid, [(ts, fs, samples), ...])}, one 3-tuple per
 * frame in arrival order: ts an int, fs a float, samples the frame's payload bytes unchanged (see {@link
 * #pickledBlock}).
 *
 * <p><b>Watermarks.</b> A block is held at most until the input watermark reaches its close time, so every
 * pending frame has {@code ts > inputWatermark - blockMillis + 1}: the operator forwards {@code
 * inputWatermark - blockMillis} (monotone; {@code Long.MAX_VALUE} as is), after firing the timers for the
 * input watermark, so a block emitted on time is never behind a watermark forwarded before it. Only a frame
 * that was already late on input can be. The timers are fired on the task thread directly (not through
 * Flink's interruptible-timers mailbox path, which this job does not enable).
 *
 * <p>Metrics under group {@code ecg}: counters {@code frame_blocks} (blocks emitted) and {@code
 * frames_blocked} (frames in them).
 */
public class FrameBlocks extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, Triggerable<Row, VoidNamespace> {
    private static final long serialVersionUID = 1L;
    /** Pickle protocol 3 opcodes (Lib/pickle.py). */
    private static final byte PROTO = (byte) 0x80;
    private static final byte BINUNICODE = 'X';
    private static final byte EMPTY_LIST = ']';
    private static final byte MARK = '(';
    private static final byte APPENDS = 'e';
    private static final byte LONG1 = (byte) 0x8a;
    private static final byte BINFLOAT = 'G';
    private static final byte BINBYTES = 'B';
    private static final byte TUPLE3 = (byte) 0x87;
    private static final byte TUPLE2 = (byte) 0x86;
    private static final byte STOP = '.';
    /** LONG1 8 bytes, BINFLOAT 8 bytes, BINBYTES 4-byte length, TUPLE3: a frame's bytes besides its samples. */
    private static final int FRAME_OVERHEAD = 2 + 8 + 1 + 8 + 1 + 4 + 1;

    private final long blockMillis;

    private transient ValueState<Long> pendingStart;
    private transient ListState<Tuple3<Long, Double, byte[]>> pendingFrames;
    private transient InternalTimerService<VoidNamespace> closeTimers;
    private transient long inputWatermark;
    private transient long forwardedWatermark;
    transient Counter blocksEmitted;
    transient Counter framesBlocked;

    public FrameBlocks(long blockMillis) {
        if (blockMillis < 1) {
            throw new IllegalArgumentException("need blockMillis >= 1, got " + blockMillis);
        }
        this.blockMillis = blockMillis;
    }

    @Override
    public void open() throws Exception {
        super.open();
        pendingStart = getRuntimeContext().getState(new ValueStateDescriptor<>("frame-block-start", Types.LONG));
        pendingFrames = getRuntimeContext().getListState(new ListStateDescriptor<>("frame-block-frames",
                Types.TUPLE(Types.LONG, Types.DOUBLE, Types.PRIMITIVE_ARRAY(Types.BYTE))));
        closeTimers = getInternalTimerService("frame-block-closes", VoidNamespaceSerializer.INSTANCE, this);
        inputWatermark = Long.MIN_VALUE;
        forwardedWatermark = Long.MIN_VALUE;
        MetricGroup metrics = getMetricGroup().addGroup("ecg");
        blocksEmitted = metrics.counter("frame_blocks");
        framesBlocked = metrics.counter("frames_blocked");
    }

    /** The close time (last millisecond) of the block starting at {@code start}. */
    private long closeTimeOf(long start) {
        return saturatedAdd(start, blockMillis - 1);
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row input = element.getValue();
        String pid = (String) input.getField(0);
        long ts = (Long) input.getField(1);
        double fs = (Double) input.getField(2);
        byte[] payload = (byte[]) input.getField(3);
        if (fs <= 0) {
            output.collect(element.replace(Row.of(pid, payload)));
            return;
        }
        long start = Math.floorDiv(ts, blockMillis) * blockMillis;
        long closeTime = closeTimeOf(start);
        Long pending = pendingStart.value();
        if (pending != null && pending != start) {
            closeTimers.deleteEventTimeTimer(VoidNamespace.INSTANCE, closeTimeOf(pending));
            emitPending(pid);
            pending = null;
        }
        boolean started = pending == null;
        if (started) {
            pendingStart.update(start);
        }
        pendingFrames.add(Tuple3.of(ts, fs, payload));
        long endMs = saturatedAdd(ts, Math.round(1000.0 * (payload.length / 8) / fs));
        if (endMs > closeTime || closeTime <= inputWatermark) {
            if (!started) {
                closeTimers.deleteEventTimeTimer(VoidNamespace.INSTANCE, closeTime);
            }
            emitPending(pid);
        } else if (started) {
            closeTimers.registerEventTimeTimer(VoidNamespace.INSTANCE, closeTime);
        }
    }

    @Override
    public void onEventTime(InternalTimer<Row, VoidNamespace> timer) throws Exception {
        Long pending = pendingStart.value();
        // A block emitted before its close time deletes its timer; the check keeps a leftover one harmless.
        if (pending != null && closeTimeOf(pending) == timer.getTimestamp()) {
            emitPending((String) timer.getKey().getField(0));
        }
    }

    @Override
    public void onProcessingTime(InternalTimer<Row, VoidNamespace> timer) {
        // registers none
    }

    /** Emits the current key's pending block at its first frame's timestamp and clears it. */
    private void emitPending(String pid) throws Exception {
        List<Tuple3<Long, Double, byte[]>> frames = new ArrayList<>();
        for (Tuple3<Long, Double, byte[]> frame : pendingFrames.get()) {
            frames.add(frame);
        }
        pendingStart.clear();
        pendingFrames.clear();
        if (frames.isEmpty()) {
            return;
        }
        blocksEmitted.inc();
        framesBlocked.inc(frames.size());
        output.collect(new StreamRecord<>(Row.of(pid, pickledBlock(pid, frames)), frames.get(0).f0));
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        if (mark.getTimestamp() <= inputWatermark) {
            return;
        }
        inputWatermark = mark.getTimestamp();
        // Fire the closes for the input watermark first, then forward it held back by one block.
        timeServiceManager.advanceWatermark(mark);
        long held = inputWatermark == Long.MAX_VALUE ? Long.MAX_VALUE : saturatedAdd(inputWatermark, -blockMillis);
        if (held > forwardedWatermark) {
            forwardedWatermark = held;
            output.emitWatermark(new Watermark(held));
        }
    }

    /** {@code a + b}, clamped to the long range (watermarks start at Long.MIN_VALUE). */
    private static long saturatedAdd(long a, long b) {
        long sum = a + b;
        // Overflow iff both operands have the sign opposite to the sum's.
        if (((a ^ sum) & (b ^ sum)) < 0) {
            return a < 0 ? Long.MIN_VALUE : Long.MAX_VALUE;
        }
        return sum;
    }

    /**
     * The pickle (protocol 3, no memo) of the Python value {@code (pid, [(ts, fs, samples), ...])}: PROTO 3,
     * BINUNICODE pid, EMPTY_LIST, MARK, per frame (LONG1 8-byte little-endian ts, BINFLOAT big-endian fs,
     * BINBYTES 4-byte little-endian length + samples, TUPLE3), APPENDS, TUPLE2, STOP.
     */
    static byte[] pickledBlock(String pid, List<Tuple3<Long, Double, byte[]>> frames) {
        byte[] pidUtf8 = pid.getBytes(StandardCharsets.UTF_8);
        int size = 2 + 5 + pidUtf8.length + 2 + 3;
        for (Tuple3<Long, Double, byte[]> frame : frames) {
            size += FRAME_OVERHEAD + frame.f2.length;
        }
        byte[] out = new byte[size];
        int at = 0;
        out[at++] = PROTO;
        out[at++] = 3;
        out[at++] = BINUNICODE;
        at = putLittleEndian(out, at, pidUtf8.length, 4);
        System.arraycopy(pidUtf8, 0, out, at, pidUtf8.length);
        at += pidUtf8.length;
        out[at++] = EMPTY_LIST;
        out[at++] = MARK;
        for (Tuple3<Long, Double, byte[]> frame : frames) {
            out[at++] = LONG1;
            out[at++] = 8;
            at = putLittleEndian(out, at, frame.f0, 8);
            out[at++] = BINFLOAT;
            long bits = Double.doubleToLongBits(frame.f1);
            for (int i = 7; i >= 0; i--) {
                out[at++] = (byte) (bits >>> (8 * i));
            }
            out[at++] = BINBYTES;
            at = putLittleEndian(out, at, frame.f2.length, 4);
            System.arraycopy(frame.f2, 0, out, at, frame.f2.length);
            at += frame.f2.length;
            out[at++] = TUPLE3;
        }
        out[at++] = APPENDS;
        out[at++] = TUPLE2;
        out[at] = STOP;
        return out;
    }

    private static int putLittleEndian(byte[] out, int at, long value, int bytes) {
        for (int i = 0; i < bytes; i++) {
            out[at + i] = (byte) (value >>> (8 * i));
        }
        return at + bytes;
    }
}
