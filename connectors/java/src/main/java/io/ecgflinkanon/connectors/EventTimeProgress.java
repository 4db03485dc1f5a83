package io.ecgflinkanon.connectors;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeHint;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.java.tuple.Tuple5;
import org.apache.flink.runtime.state.StateInitializationContext;
import org.apache.flink.runtime.state.StateSnapshotContext;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.operators.util.PausableRelativeClock;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.runtime.watermarkstatus.WatermarkStatus;
import org.apache.flink.types.Row;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keeps the Kafka source's event-time progress in checkpoints and re-emits it after a restore.
 *
 * <p>Flink does not checkpoint watermarks. A restored job whose source has already read everything
 * (a drained backlog, or an end-of-stream marker read just before the checkpoint) would otherwise
 * never see event time move again, and the windows in its restored state would never fire. This
 * operator runs chained right after the source on records {@code Row(topic, partition, offset,
 * timestamp, value)} and keeps, per partition, the largest record timestamp and the sequence number
 * of its last record, plus the last watermark it forwarded. All of it is union operator state, so a
 * restore at another parallelism sees everything.
 *
 * <p>It forwards the source's watermarks unchanged except that they never fall below a floor:
 *
 * <ul>
 *   <li>at restore, the watermark the job had reached at the checkpoint (Flink restarts every
 *       operator at the lowest possible watermark; the restored windows behind it fire at once);
 *   <li>when the source reports that all its partitions are idle (nothing more to read, e.g. after
 *       a restore from a checkpoint whose offsets are at the end of every partition), the watermark
 *       the source reaches from the records it has read when its partitions go idle one after the
 *       other in the order of their last records (what Flink's per-split idleness does without a
 *       crash), the maximum over subtasks as Flink's watermark valve takes it when all inputs are
 *       idle. Records read before the checkpoint count, so a restored job that has nothing left to
 *       read still closes the windows the uninterrupted job closes.
 * </ul>
 *
 * <p>Both are values the uninterrupted run reaches from the same records, so windows fire with the
 * same contents; records that arrive behind them are late in both runs.
 *
 * <p>It does not depend on the source to say that it is idle: when no record has come for the idle
 * timeout (on a clock that stops while the task is backpressured, as the source's idleness clocks do)
 * and the source still has not reported idle, it applies the source's own rule itself: it raises the
 * watermark to the all-idle value above and announces its output idle, with one WARN line. A restored
 * job with nothing left to read sometimes waited for that report forever (RUNNING, checkpoints every
 * 2 s, no window for 100 s: issue 19); the line shows when this fallback is what moved event time.
 */
public class EventTimeProgress extends AbstractStreamOperator<Row> implements OneInputStreamOperator<Row, Row> {
    private static final long serialVersionUID = 1L;
    private static final Logger LOG = LoggerFactory.getLogger(EventTimeProgress.class);
    private static final String SUMMARY = "";
    /**
     * The source's idleness clocks start when it first polls, which can be seconds after this operator
     * opens on a loaded machine: it gets this long beyond the timeout to report idle itself.
     */
    private static final long SOURCE_GRACE_MILLIS = 5_000;

    private final long outOfOrdernessMillis;
    private final long idleTimeoutMillis;

    /** Per partition ("topic#partition"): {max record timestamp, sequence number of its last record}. */
    private transient Map<String, long[]> partitions;
    /** Restored partitions grouped by the subtask that owned them (for the all-idle emulation). */
    private transient Map<Integer, Map<String, long[]>> restoredByOwner;
    private transient Map<Integer, Long> restoredForwarded;
    private transient ListState<Tuple5<Integer, String, Long, Long, Boolean>> state;
    private transient long sequence;
    private transient long lastEmitted;
    private transient long restoreFloor;
    /** Whether the output is announced idle (by the source's report, or by this operator's fallback). */
    private transient boolean idle;
    /** The output is idle because of this operator's fallback, not the source's report. */
    private transient boolean idleByFallback;
    private transient PausableRelativeClock activityClock;
    private transient long lastActivityNanos;
    private transient long fallbackNanos;
    private transient boolean backPressureListening;

    /** Without the idleness fallback (the source's report alone moves an idle input). */
    public EventTimeProgress(long outOfOrdernessMillis) {
        this(outOfOrdernessMillis, 0);
    }

    /** {@code idleTimeoutMillis}: the source's idle timeout; 0 turns the fallback off. */
    public EventTimeProgress(long outOfOrdernessMillis, long idleTimeoutMillis) {
        this.outOfOrdernessMillis = outOfOrdernessMillis;
        this.idleTimeoutMillis = idleTimeoutMillis;
    }

    private long watermarkOf(long maxTimestamp) {
        return maxTimestamp == Long.MIN_VALUE ? Long.MIN_VALUE : maxTimestamp - outOfOrdernessMillis - 1;
    }

    @Override
    public void initializeState(StateInitializationContext context) throws Exception {
        super.initializeState(context);
        partitions = new HashMap<>();
        restoredByOwner = new HashMap<>();
        restoredForwarded = new HashMap<>();
        lastEmitted = Long.MIN_VALUE;
        restoreFloor = Long.MIN_VALUE;
        state = context.getOperatorStateStore()
                .getUnionListState(new ListStateDescriptor<>(
                        "event-time-progress",
                        TypeInformation.of(new TypeHint<Tuple5<Integer, String, Long, Long, Boolean>>() {})));
        if (!context.isRestored()) {
            return;
        }
        Map<Integer, Boolean> ownerActive = new HashMap<>();
        for (Tuple5<Integer, String, Long, Long, Boolean> entry : state.get()) {
            if (SUMMARY.equals(entry.f1)) {
                restoredForwarded.merge(entry.f0, entry.f2, Math::max);
                ownerActive.merge(entry.f0, entry.f4, Boolean::logicalOr);
            } else {
                long[] value = {entry.f2, entry.f3};
                restoredByOwner.computeIfAbsent(entry.f0, owner -> new HashMap<>()).merge(entry.f1, value,
                        (a, b) -> a[0] >= b[0] ? a : b);
            }
        }
        // The watermark the job had reached: the minimum over the subtasks whose output was active, or,
        // when all of them were idle, the largest any of them forwarded (the watermark valve's rules).
        // Not more: a partition that had not delivered a record before the checkpoint still holds event
        // time back, and only the source knows it exists.
        long minActive = Long.MAX_VALUE;
        long maxForwarded = Long.MIN_VALUE;
        for (Map.Entry<Integer, Long> owner : restoredForwarded.entrySet()) {
            maxForwarded = Math.max(maxForwarded, owner.getValue());
            if (ownerActive.getOrDefault(owner.getKey(), false)) {
                minActive = Math.min(minActive, owner.getValue());
            }
        }
        restoreFloor = minActive != Long.MAX_VALUE ? minActive : maxForwarded;
        for (Map<String, long[]> owned : restoredByOwner.values()) {
            for (Map.Entry<String, long[]> partition : owned.entrySet()) {
                partitions.merge(partition.getKey(), new long[] {partition.getValue()[0], -1},
                        (a, b) -> a[0] >= b[0] ? a : b);
            }
        }
    }

    /** The watermark the source reaches when the partitions go idle in the order of their last record. */
    private long allIdleWatermark(Map<String, long[]> owned, long forwarded) {
        List<long[]> ordered = new ArrayList<>(owned.values());
        ordered.sort((a, b) -> Long.compare(a[1], b[1]));
        long result = forwarded;
        // Before partition i goes idle the active set is {i, ..., n-1}: the combined watermark is its minimum.
        long suffixMin = Long.MAX_VALUE;
        long[] suffixMins = new long[ordered.size()];
        for (int i = ordered.size() - 1; i >= 0; i--) {
            suffixMin = Math.min(suffixMin, watermarkOf(ordered.get(i)[0]));
            suffixMins[i] = suffixMin;
        }
        for (long value : suffixMins) {
            result = Math.max(result, value);
        }
        return result;
    }

    @Override
    public void open() throws Exception {
        super.open();
        if (restoreFloor != Long.MIN_VALUE) {
            long floor = restoreFloor;
            // On the task thread, as soon as the task runs: the restored windows need it even if the
            // source never emits again.
            getProcessingTimeService().registerTimer(getProcessingTimeService().getCurrentProcessingTime(),
                    timestamp -> emit(floor));
        }
        if (idleTimeoutMillis > 0) {
            activityClock = new PausableRelativeClock(getProcessingTimeService().getClock());
            try {
                getContainingTask().getEnvironment().getMetricGroup().getIOMetricGroup()
                        .registerBackPressureListener(activityClock);
                backPressureListening = true;
            } catch (RuntimeException | LinkageError noMetrics) {
                LOG.debug("no back-pressure listener (test harness?): {}", noMetrics.toString());
            }
            lastActivityNanos = activityClock.relativeTimeNanos();
            long period = Math.max(200L, Math.min(1_000L, idleTimeoutMillis / 4));
            getProcessingTimeService().scheduleWithFixedDelay(timestamp -> checkSilence(), period, period);
        }
    }

    /** The source's idleness rule, applied here when the source has not reported idle in time. */
    private void checkSilence() {
        if (idle) {
            return;
        }
        long silentMillis = (activityClock.relativeTimeNanos() - lastActivityNanos) / 1_000_000L;
        if (silentMillis < idleTimeoutMillis + SOURCE_GRACE_MILLIS) {
            return;
        }
        long target = allIdleTarget();
        LOG.warn("event-time progress: no record for {} ms (idle timeout {} ms) and the source has not reported "
                + "idle; advancing event time to {} (was {}) and marking the input idle, as the source would",
                silentMillis, idleTimeoutMillis, target, lastEmitted);
        emit(target);
        idle = true;
        idleByFallback = true;
        fallbackNanos = activityClock.relativeTimeNanos();
        output.emitWatermarkStatus(WatermarkStatus.IDLE);
    }

    private long allIdleTarget() {
        long target = allIdleWatermark(partitions, lastEmitted);
        for (Map.Entry<Integer, Map<String, long[]>> owner : restoredByOwner.entrySet()) {
            target = Math.max(target,
                    allIdleWatermark(owner.getValue(), restoredForwarded.getOrDefault(owner.getKey(), Long.MIN_VALUE)));
        }
        return target;
    }

    private void emit(long watermark) {
        if (watermark <= lastEmitted) {
            return;
        }
        lastEmitted = watermark;
        if (idle) {
            // An idle output drops watermarks; announce activity for this one step.
            output.emitWatermarkStatus(WatermarkStatus.ACTIVE);
            output.emitWatermark(new Watermark(watermark));
            output.emitWatermarkStatus(WatermarkStatus.IDLE);
        } else {
            output.emitWatermark(new Watermark(watermark));
        }
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row row = element.getValue();
        String key = row.getField(0) + "#" + row.getField(1);
        long timestamp = element.hasTimestamp() ? element.getTimestamp() : Long.MIN_VALUE;
        long[] progress = partitions.get(key);
        sequence++;
        if (activityClock != null) {
            lastActivityNanos = activityClock.relativeTimeNanos();
        }
        if (idleByFallback) {
            // Only this operator called the input idle: records flow again.
            idle = false;
            idleByFallback = false;
            output.emitWatermarkStatus(WatermarkStatus.ACTIVE);
        }
        if (progress == null) {
            partitions.put(key, new long[] {timestamp, sequence});
        } else {
            progress[0] = Math.max(progress[0], timestamp);
            progress[1] = sequence;
        }
        output.collect(element);
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        emit(Math.max(mark.getTimestamp(), restoreFloor));
    }

    @Override
    public void processWatermarkStatus(WatermarkStatus status) throws Exception {
        if (status.isIdle()) {
            // The source stops emitting watermarks now. Without a crash it would have reached this
            // value from the records it read; after a restore it has forgotten them.
            emit(allIdleTarget());
            if (idleByFallback) {
                // Evidence for the next reader: was the source late, or would it never have said it?
                LOG.info("event-time progress: the source reported idle {} ms after the fallback did",
                        (activityClock.relativeTimeNanos() - fallbackNanos) / 1_000_000L);
                idleByFallback = false;
            }
            if (idle) {
                return; // announced already, by the fallback
            }
            idle = true;
        } else {
            if (!idle) {
                return;
            }
            idle = false;
            idleByFallback = false;
        }
        output.emitWatermarkStatus(status);
    }

    @Override
    public void close() throws Exception {
        if (backPressureListening) {
            getContainingTask().getEnvironment().getMetricGroup().getIOMetricGroup()
                    .unregisterBackPressureListener(activityClock);
            backPressureListening = false;
        }
        super.close();
    }

    @Override
    public void snapshotState(StateSnapshotContext context) throws Exception {
        super.snapshotState(context);
        int subtask = getRuntimeContext().getTaskInfo().getIndexOfThisSubtask();
        state.clear();
        List<Tuple5<Integer, String, Long, Long, Boolean>> entries = new ArrayList<>();
        entries.add(Tuple5.of(subtask, SUMMARY, lastEmitted, 0L, !idle));
        for (Map.Entry<String, long[]> partition : partitions.entrySet()) {
            entries.add(Tuple5.of(subtask, partition.getKey(), partition.getValue()[0], partition.getValue()[1], true));
        }
        state.update(entries);
    }
}
