package io.ecgflinkanon.connectors;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
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
 * timestamp, value)} and keeps, per partition, the largest record timestamp and the next offset to read
 * (0 in checkpoints of older versions: unknown), plus the last watermark it forwarded. All of it is union operator state, so a
 * restore at another parallelism sees everything.
 *
 * <p>It forwards the source's watermarks unchanged except that they never fall below a floor:
 *
 * <ul>
 *   <li>at restore, the watermark the job had reached at the checkpoint (Flink restarts every
 *       operator at the lowest possible watermark; the restored windows behind it fire at once);
 *   <li>when the source reports that all its partitions are idle (nothing more to read, e.g. after
 *       a restore from a checkpoint whose offsets are at the end of every partition), the newest
 *       partition's watermark (largest record timestamp minus the bound), the maximum over partitions
 *       and subtasks, as Flink's watermark valve takes it when all its inputs are idle. Records read
 *       before the checkpoint count, so a restored job that has nothing left to read closes the same
 *       windows as the uninterrupted job.
 * </ul>
 *
 * <p>Why the maximum: Flink's source keeps the minimum over partitions that went idle in the same
 * periodic check, so where a drained backlog ends depended on which partition the fetcher happened to
 * read last (an earlier version emulated that order: a restored job closed the windows of a partition
 * that stopped early in 1 of 2 runs and stalled behind it in the other). With every partition idle no
 * record is in flight anywhere; a partition that later sends frames behind this watermark has them
 * dead-lettered as late, as it would after going idle alone in a live stream.
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
 *
 * <p>An idle input is announced idle downstream ({@link WatermarkStatus#IDLE}) only {@code
 * idleAnnounceDelayMillis} after the last watermark emitted. A PyFlink operator holds a watermark back while
 * its bundle is open but forwards a watermark status at once, and an output announced idle drops every
 * watermark that follows; an IDLE right behind the all-idle watermark overtook it in such an operator, and
 * the watermark was lost for everything downstream (a restored cardio job whose detector was kept busy by
 * its poll timers never closed a round again). The delay must exceed what the Python operators on the way
 * can hold a watermark (their bundle time each); meanwhile this input still counts downstream, at the
 * watermark it has reached.
 *
 * <p>A delay alone is not enough during a catch-up: a watermark can wait in the input queue of a slow
 * operator (the beat detector) for minutes, and an IDLE sent a delay later queues right behind it and
 * overtakes it there all the same (a restored cardio job lost its end-of-input watermark that way and
 * never closed its last federated round: the backlog chaos test, issue 19). With {@code
 * announceAfterCheckpoint} the input is announced idle only once a checkpoint whose barrier left this
 * operator after the last watermark has completed: with aligned checkpoints every operator has then
 * processed that watermark, and every Python operator has finished the bundle that held it (PyFlink
 * finishes its bundle before a barrier). Until then the input simply stays active at its watermark.
 *
 * <p>All idle is not always "nothing more to read": a source also goes idle when the broker is unreachable.
 * Jumping to the newest partition's watermark then fired the windows of the partitions behind it with part of
 * their frames, and the rest came late: after a 120 s broker outage mid-backlog, a job restored during the
 * outage fired every window of its restored state at once (issue 20, item 4: 63,000 points more than the
 * uninterrupted run, the missing frames dead-lettered as late). With an {@link InputEndCheck} the jump waits
 * until the broker confirms, on a thread of its own, that every partition read is read to its end (the next
 * offsets to read are kept in the checkpoint with the timestamps); until then the input stays active at its
 * watermark (one WARN line) and the broker is asked again every {@code END_CHECK_PERIOD_MILLIS}.
 *
 * <p>When records come again after such an unconfirmed idleness, Flink's source has every partition marked
 * idle, and the first partition to deliver sets event time alone until the others deliver too: in the same
 * outage test the restored job fired a window with part of its frames right after the broker came back
 * (23 frames dead-lettered as late). So each partition known here holds the forwarded watermark at its
 * own (its newest record minus the bound) until it delivers a record again or the broker confirms that it
 * is read to its end.
 *
 * <p>The same holds for one partition at a time, outage or not: Flink's source leaves a partition out of its
 * watermark once it has delivered nothing for the idle timeout, and on a loaded machine, or behind a throttle,
 * a partition with records still unread went that long without its turn; event time moved on and its frames
 * came late (a view throttled to 32 records/s, the 200-patient raw-ECG benchmark: issue 19). So, with an
 * {@link InputEndCheck}, a partition this subtask reads holds the forwarded watermark at its own whenever the
 * source's watermark passes it, until it delivers records that lift its own or the broker confirms it is read
 * to its end (asked every {@code END_CHECK_PERIOD_MILLIS}, for the holding partitions only). A quiet partition
 * (a ward gone home) is confirmed within about a second of the source's idle timeout. A partition that has not
 * delivered a record yet is known from the source reader's split assignment ({@link PartitionTrackingSource}):
 * it holds event time from the offset the reader starts at, until it delivers or is confirmed empty from there.
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
    /** How often an idle input that waits for the broker's confirmation asks again. */
    private static final long END_CHECK_PERIOD_MILLIS = 1_000;

    private final long outOfOrdernessMillis;
    private final long maxHoldMillis;
    private final long idleTimeoutMillis;

    /** Per partition ("topic#partition"): {max record timestamp} (an array: updated in place per record). */
    private transient Map<String, long[]> partitions;
    /** The largest watermark any subtask had forwarded at the restored checkpoint. */
    private transient long restoredMaxForwarded;
    private transient ListState<Tuple5<Integer, String, Long, Long, Boolean>> state;
    private transient long lastEmitted;
    private transient long restoreFloor;
    /** How long after its last watermark the output is announced idle (see the class comment). */
    private final long idleAnnounceDelayMillis;

    /** The input is idle: the source reported it, or this operator's fallback decided it. */
    private transient boolean inputIdle;
    /** The input is idle because of this operator's fallback, not the source's report. */
    private transient boolean idleByFallback;
    /** Whether the output is announced idle (downstream then leaves it out of its watermark). */
    private transient boolean announcedIdle;
    private transient long lastWatermarkMillis;
    /** Announce idle only after a checkpoint taken behind the last watermark has completed (see the class comment). */
    private final boolean announceAfterCheckpoint;
    /** The first checkpoint snapshotted after the last watermark; Long.MAX_VALUE: none yet. */
    private transient long checkpointBehindWatermark;
    /** A checkpoint taken behind the last watermark has completed: the watermark has passed every operator. */
    private transient boolean watermarkPassedEverything;
    /** Confirms "nothing more to read" before the all-idle jump; null: the idle report alone decides. */
    private final InputEndCheck endCheck;
    /** Per partition ("topic#partition"): the offset after the last record read (checkpointed). */
    private transient Map<String, Long> nextOffsets;
    /** The input went idle (source's report or the fallback) and waits for the broker's confirmation. */
    private transient boolean awaitingEnd;
    private transient boolean awaitingByFallback;
    private transient boolean holdLogged;
    private transient long recordsSeen;
    private transient long probedAtRecords;
    private transient Future<Set<String>> endProbe;
    /** What the running probe asks about: per partition the next offset to read when it started. */
    private transient Map<String, Long> probedOffsets;
    /** Written by the end check's thread: the offsets it resolved for the partitions it was asked about. */
    private transient Map<String, Long> resolvedStarts;
    /** Partitions the broker confirmed read to their end since their last record: they hold nothing back. */
    private transient Set<String> atEnd;
    /** Partitions whose own watermark is below the source's: they hold event time (see the class comment). */
    private transient Set<String> holding;
    /** Per holding partition: when the broker first answered, in this hold, that it has records unread. */
    private transient Map<String, Long> unreadSince;
    /** Partitions whose hold has been logged (once per hold, not per watermark). */
    private transient Set<String> holdReported;
    /** Assigned partitions without a resolved starting offset that have been logged. */
    private transient Set<String> unresolvedReported;
    /** The source's last watermark (never below the restore floor), before the partitions' holds. */
    private transient long sourceWatermark;
    private transient ExecutorService endProbeThread;
    private transient PausableRelativeClock activityClock;
    private transient long lastActivityNanos;
    private transient long fallbackNanos;
    private transient boolean backPressureListening;

    /** Without the idleness fallback (the source's report alone moves an idle input). */
    public EventTimeProgress(long outOfOrdernessMillis) {
        this(outOfOrdernessMillis, 0);
    }

    /** {@code idleTimeoutMillis}: the source's idle timeout; 0 turns the fallback off. Idleness announced at once. */
    public EventTimeProgress(long outOfOrdernessMillis, long idleTimeoutMillis) {
        this(outOfOrdernessMillis, idleTimeoutMillis, 0);
    }

    /**
     * {@code idleAnnounceDelayMillis}: an idle input is announced idle downstream only this long after the last
     * watermark this operator emitted (longer than the Python operators downstream can hold a watermark back).
     */
    public EventTimeProgress(long outOfOrdernessMillis, long idleTimeoutMillis, long idleAnnounceDelayMillis) {
        this(outOfOrdernessMillis, idleTimeoutMillis, idleAnnounceDelayMillis, false);
    }

    /**
     * {@code announceAfterCheckpoint}: besides the delay, an idle input is announced idle only once a checkpoint
     * whose barrier followed the last watermark has completed (needs aligned checkpoints).
     */
    public EventTimeProgress(long outOfOrdernessMillis, long idleTimeoutMillis, long idleAnnounceDelayMillis,
            boolean announceAfterCheckpoint) {
        this(outOfOrdernessMillis, idleTimeoutMillis, idleAnnounceDelayMillis, announceAfterCheckpoint, null);
    }

    /**
     * {@code endCheck}: before an all-idle input moves event time to the newest partition's watermark, the
     * broker must confirm that every partition read is read to its end (see the class comment); null: no check.
     */
    public EventTimeProgress(long outOfOrdernessMillis, long idleTimeoutMillis, long idleAnnounceDelayMillis,
            boolean announceAfterCheckpoint, InputEndCheck endCheck) {
        this(outOfOrdernessMillis, idleTimeoutMillis, idleAnnounceDelayMillis, announceAfterCheckpoint, endCheck, 0);
    }

    /**
     * {@code maxHoldMillis}: a partition the broker keeps reporting with records unread holds event time at most
     * this long (0: no limit); then it is left out, as the source's idleness rule alone would, with a WARN line
     * (see the class comment).
     */
    public EventTimeProgress(long outOfOrdernessMillis, long idleTimeoutMillis, long idleAnnounceDelayMillis,
            boolean announceAfterCheckpoint, InputEndCheck endCheck, long maxHoldMillis) {
        this.maxHoldMillis = maxHoldMillis;
        this.endCheck = endCheck;
        this.outOfOrdernessMillis = outOfOrdernessMillis;
        this.idleTimeoutMillis = idleTimeoutMillis;
        this.idleAnnounceDelayMillis = idleAnnounceDelayMillis;
        this.announceAfterCheckpoint = announceAfterCheckpoint;
    }

    private long watermarkOf(long maxTimestamp) {
        return maxTimestamp == Long.MIN_VALUE ? Long.MIN_VALUE : maxTimestamp - outOfOrdernessMillis - 1;
    }

    @Override
    public void initializeState(StateInitializationContext context) throws Exception {
        super.initializeState(context);
        partitions = new HashMap<>();
        nextOffsets = new HashMap<>();
        atEnd = new HashSet<>();
        holding = new HashSet<>();
        holdReported = new HashSet<>();
        unreadSince = new HashMap<>();
        unresolvedReported = new HashSet<>();
        resolvedStarts = new ConcurrentHashMap<>();
        sourceWatermark = Long.MIN_VALUE;
        restoredMaxForwarded = Long.MIN_VALUE;
        lastEmitted = Long.MIN_VALUE;
        restoreFloor = Long.MIN_VALUE;
        checkpointBehindWatermark = Long.MAX_VALUE;
        watermarkPassedEverything = false;
        state = context.getOperatorStateStore()
                .getUnionListState(new ListStateDescriptor<>(
                        "event-time-progress",
                        TypeInformation.of(new TypeHint<Tuple5<Integer, String, Long, Long, Boolean>>() {})));
        if (!context.isRestored()) {
            return;
        }
        Map<Integer, Long> restoredForwarded = new HashMap<>();
        Map<Integer, Boolean> ownerActive = new HashMap<>();
        Map<String, Long> ownNextOffsets = new HashMap<>();
        int subtask = getRuntimeContext().getTaskInfo().getIndexOfThisSubtask();
        for (Tuple5<Integer, String, Long, Long, Boolean> entry : state.get()) {
            if (SUMMARY.equals(entry.f1)) {
                restoredForwarded.merge(entry.f0, entry.f2, Math::max);
                ownerActive.merge(entry.f0, entry.f4, Boolean::logicalOr);
            } else {
                partitions.merge(entry.f1, new long[] {entry.f2}, (a, b) -> a[0] >= b[0] ? a : b);
                // f3: the next offset to read (0: unknown, a checkpoint of an older version).
                if (entry.f0 == subtask && entry.f3 > 0) {
                    ownNextOffsets.put(entry.f1, entry.f3);
                }
            }
        }
        // The partitions this subtask read before, at the same parallelism (the source then gives it the same
        // ones): the end check starts from them. After a rescale it knows only what it reads again.
        if (restoredForwarded.size() == getRuntimeContext().getTaskInfo().getNumberOfParallelSubtasks()) {
            nextOffsets.putAll(ownNextOffsets);
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
        restoredMaxForwarded = maxForwarded;
    }

    @Override
    public void open() throws Exception {
        super.open();
        if (restoreFloor != Long.MIN_VALUE) {
            long floor = restoreFloor;
            // On the task thread, as soon as the task runs: the restored windows need it even if the
            // source never emits again.
            getProcessingTimeService().registerTimer(getProcessingTimeService().getCurrentProcessingTime(),
                    timestamp -> {
                        LOG.info("event-time progress: restored watermark {} (last emitted {})", floor, lastEmitted);
                        emit(floor);
                    });
        }
        if (endCheck != null) {
            endProbeThread = Executors.newSingleThreadExecutor(runnable -> {
                Thread thread = new Thread(runnable, "event-time end check");
                thread.setDaemon(true);
                return thread;
            });
            getProcessingTimeService().scheduleWithFixedDelay(timestamp -> checkEndConfirmed(),
                    END_CHECK_PERIOD_MILLIS, END_CHECK_PERIOD_MILLIS);
        }
        if (idleAnnounceDelayMillis > 0 && idleTimeoutMillis <= 0) {
            long period = Math.max(100L, Math.min(1_000L, idleAnnounceDelayMillis / 4));
            getProcessingTimeService().scheduleWithFixedDelay(timestamp -> announceIdleIfDue(), period, period);
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
            long shortest = idleAnnounceDelayMillis > 0 ? Math.min(idleTimeoutMillis, idleAnnounceDelayMillis) : idleTimeoutMillis;
            long period = Math.max(100L, Math.min(1_000L, shortest / 4));
            getProcessingTimeService().scheduleWithFixedDelay(timestamp -> checkSilence(), period, period);
        }
    }

    /** The source's idleness rule, applied here when the source has not reported idle in time. */
    private void checkSilence() {
        announceIdleIfDue();
        if (inputIdle || awaitingEnd) {
            return;
        }
        long silentMillis = (activityClock.relativeTimeNanos() - lastActivityNanos) / 1_000_000L;
        if (silentMillis < idleTimeoutMillis + SOURCE_GRACE_MILLIS) {
            return;
        }
        long target = allIdleTarget();
        LOG.warn("event-time progress: no record for {} ms (idle timeout {} ms) and the source has not reported "
                + "idle; advancing event time to {} (was {}) and marking the input idle, as the source would{}",
                silentMillis, idleTimeoutMillis, target, lastEmitted,
                endCheck == null ? "" : ", once the broker confirms that every partition is read to its end");
        fallbackNanos = activityClock.relativeTimeNanos();
        if (endCheck != null) {
            awaitEnd(true);
            return;
        }
        emit(target);
        inputIdle = true;
        idleByFallback = true;
        announceIdleIfDue();
    }

    /** The input went idle: ask the broker whether anything is left to read before moving event time. */
    private void awaitEnd(boolean byFallback) {
        awaitingEnd = true;
        awaitingByFallback = byFallback;
        holdLogged = false;
        startEndProbe();
    }

    private void startEndProbe() {
        if (endProbe != null) {
            return;
        }
        adoptAssignedPartitions();
        // Idle input: every partition; otherwise only those that hold event time (one probe each, not all).
        Map<String, Long> snapshot = new HashMap<>(nextOffsets);
        if (!awaitingEnd) {
            snapshot.keySet().retainAll(holding);
        }
        probedAtRecords = recordsSeen;
        probedOffsets = snapshot;
        endProbe = endProbeThread.submit(() -> {
            Map<String, Long> concrete = endCheck.resolveStarts(snapshot);
            if (concrete == null) {
                return null;
            }
            resolvedStarts.putAll(concrete);
            return endCheck.unread(concrete);
        });
    }

    /** On the task thread: the broker's answer, if there is one yet; the all-idle step once it confirms. */
    private void checkEndConfirmed() throws Exception {
        if (endProbe != null && !endProbe.isDone()) {
            return;
        }
        if (endProbe != null) {
            Set<String> unread;
            try {
                unread = endProbe.get();
            } catch (ExecutionException failed) {
                unread = null; // unknown: ask again
            }
            endProbe = null;
            if (unread != null) {
                long now = getProcessingTimeService().getCurrentProcessingTime();
                for (Map.Entry<String, Long> asked : probedOffsets.entrySet()) {
                    // Read to its end, and nothing read from it since the question: it holds nothing back.
                    if (!unread.contains(asked.getKey()) && asked.getValue().equals(nextOffsets.get(asked.getKey()))) {
                        atEnd.add(asked.getKey());
                    } else if (unread.contains(asked.getKey()) && holding.contains(asked.getKey())) {
                        releaseIfHeldTooLong(asked.getKey(), now);
                    }
                }
            } else {
                unreadSince.clear(); // the broker does not answer (an outage): the reader cannot be blamed
            }
            // Starting offsets the check resolved (sentinels of partitions that have not delivered yet): fixed now.
            for (Map.Entry<String, Long> start : resolvedStarts.entrySet()) {
                nextOffsets.computeIfPresent(start.getKey(), (key, offset) -> offset < 0 ? start.getValue() : offset);
            }
            resolvedStarts.clear();
            if (awaitingEnd) {
                if (unread != null && unread.isEmpty() && recordsSeen == probedAtRecords) {
                    awaitingEnd = false;
                    long target = allIdleTarget();
                    LOG.info("event-time progress: the broker confirms every partition read to its end; watermark {} -> {}",
                            lastEmitted, Math.max(lastEmitted, target));
                    emit(target);
                    inputIdle = true;
                    idleByFallback = awaitingByFallback;
                    announceIdleIfDue();
                    return;
                }
                if (!holdLogged) {
                    holdLogged = true;
                    LOG.warn("event-time progress: the input is idle but {}; event time stays at {} (input active) until "
                            + "the broker confirms that every partition is read to its end", unread == null
                            ? "the broker does not answer" : "the broker has records after the last one read", lastEmitted);
                }
            } else if (!holding.isEmpty()) {
                emit(heldBack(sourceWatermark));
            }
        }
        if (awaitingEnd || !holding.isEmpty()) {
            startEndProbe();
        }
    }

    /** Records again after an unconfirmed idleness: every known partition holds event time until it delivers. */
    private void resumeAfterUnconfirmedIdle() {
        awaitingEnd = false;
        // What the broker confirmed before it went away may be stale now.
        atEnd.clear();
        LOG.info("event-time progress: records again after an idleness the broker did not confirm; each of the {} "
                + "partitions read here holds event time at its own watermark until it delivers or is read to its end",
                nextOffsets.size());
    }

    /**
     * A reader that never gets back to a partition with records would otherwise hold event time for good (a
     * throttled view over 4 partitions whose reader took one or two partitions only for minutes: the view
     * published nothing, issue 23). After {@code maxHoldMillis} of the broker saying "records unread", the
     * partition is left out as the source's idleness rule would; its frames then come late (dead-lettered,
     * counted), as before this hold existed.
     */
    private void releaseIfHeldTooLong(String partition, long now) {
        long since = unreadSince.computeIfAbsent(partition, key -> now);
        if (maxHoldMillis > 0 && now - since >= maxHoldMillis) {
            unreadSince.remove(partition);
            atEnd.add(partition); // until it delivers again
            LOG.warn("event-time progress: partition {} has held event time for {} ms with records unread and the "
                    + "reader has not come back to it; leaving it out (its frames behind the watermark will be late)",
                    partition, now - since);
        }
    }

    /**
     * The partitions the source reader was given that have not delivered a record yet, from the offset it starts
     * at (see {@link PartitionTrackingSource}): they hold event time like the others, at no watermark of their own,
     * until they deliver or the broker confirms there is nothing to read from there (an empty partition).
     */
    private void adoptAssignedPartitions() {
        for (Map.Entry<String, Long> assigned : AssignedPartitions.onThisTask().entrySet()) {
            long start = assigned.getValue();
            if (start >= 0 || start == InputEndCheck.EARLIEST || start == InputEndCheck.LATEST) {
                // A sentinel ("from the beginning", "from the end") is resolved by the end check, on its thread.
                nextOffsets.putIfAbsent(assigned.getKey(), start);
            } else if (unresolvedReported.add(assigned.getKey())) {
                LOG.warn("event-time progress: partition {} was given to the source without a resolved starting "
                        + "offset ({}); until it delivers, the source's idleness rule alone decides for it",
                        assigned.getKey(), assigned.getValue());
            }
        }
    }

    /**
     * The source's watermark, held at the own watermark of each partition read here that it passes and that the
     * broker has not confirmed read to its end (see the class comment); fills {@link #holding}.
     */
    private long heldBack(long watermark) {
        holding.clear();
        if (endCheck == null || watermark == Long.MAX_VALUE) {
            return watermark; // no broker to ask; or the end of a bounded input: nothing is left anywhere
        }
        adoptAssignedPartitions();
        long held = watermark;
        for (String partition : nextOffsets.keySet()) {
            if (atEnd.contains(partition)) {
                continue;
            }
            long[] progress = partitions.get(partition);
            long own = progress == null ? Long.MIN_VALUE : watermarkOf(progress[0]);
            if (own < watermark) {
                held = Math.min(held, own);
                holding.add(partition);
                if (holdReported.add(partition)) {
                    LOG.info("event-time progress: partition {} is behind the source's watermark {} at {} and not "
                            + "confirmed read to its end; it holds event time until it delivers or the broker "
                            + "confirms it", partition, watermark, own);
                }
            }
        }
        holdReported.retainAll(holding);
        return held;
    }

    /**
     * Announces an idle input downstream once its last watermark is {@code idleAnnounceDelayMillis} old. A
     * Python operator holds a watermark back while its bundle is open but forwards a status at once, and an
     * output announced idle drops the watermarks that come after: an IDLE right behind a watermark overtook
     * it there, and everything downstream lost that watermark for good (a restored detector, kept busy by its
     * poll timers, never passed on the watermark that closes the rounds: issue 19).
     */
    private void announceIdleIfDue() {
        if (!inputIdle || announcedIdle) {
            return;
        }
        long now = getProcessingTimeService().getCurrentProcessingTime();
        if (lastEmitted != Long.MIN_VALUE && now - lastWatermarkMillis < idleAnnounceDelayMillis) {
            return;
        }
        if (announceAfterCheckpoint && lastEmitted != Long.MIN_VALUE && !watermarkPassedEverything) {
            return;
        }
        announcedIdle = true;
        LOG.info("event-time progress: input idle, announced idle at watermark {}", lastEmitted);
        output.emitWatermarkStatus(WatermarkStatus.IDLE);
    }

    /** All partitions idle: the newest partition's watermark, never below what was forwarded. */
    private long allIdleTarget() {
        long target = Math.max(lastEmitted, restoredMaxForwarded);
        for (long[] progress : partitions.values()) {
            target = Math.max(target, watermarkOf(progress[0]));
        }
        return target;
    }

    private void emit(long watermark) {
        if (watermark <= lastEmitted) {
            return;
        }
        lastEmitted = watermark;
        if (announcedIdle) {
            // An idle output drops watermarks: active again for this one, idle again after the delay.
            announcedIdle = false;
            output.emitWatermarkStatus(WatermarkStatus.ACTIVE);
        }
        output.emitWatermark(new Watermark(watermark));
        lastWatermarkMillis = getProcessingTimeService().getCurrentProcessingTime();
        checkpointBehindWatermark = Long.MAX_VALUE;
        watermarkPassedEverything = false;
        announceIdleIfDue();
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row row = element.getValue();
        String key = row.getField(0) + "#" + row.getField(1);
        long timestamp = element.hasTimestamp() ? element.getTimestamp() : Long.MIN_VALUE;
        long[] progress = partitions.get(key);
        if (activityClock != null) {
            lastActivityNanos = activityClock.relativeTimeNanos();
        }
        if (idleByFallback) {
            // Only this operator called the input idle: records flow again.
            inputIdle = false;
            idleByFallback = false;
            announceActive();
        }
        recordsSeen++;
        if (awaitingEnd && awaitingByFallback) {
            resumeAfterUnconfirmedIdle();
        }
        atEnd.remove(key);
        unreadSince.remove(key);
        Object offset = row.getField(2);
        if (offset instanceof Number) {
            nextOffsets.put(key, ((Number) offset).longValue() + 1);
        }
        if (progress == null) {
            partitions.put(key, new long[] {timestamp});
        } else {
            progress[0] = Math.max(progress[0], timestamp);
        }
        output.collect(element);
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        sourceWatermark = Math.max(sourceWatermark, Math.max(mark.getTimestamp(), restoreFloor));
        emit(heldBack(sourceWatermark));
    }

    @Override
    public void processWatermarkStatus(WatermarkStatus status) throws Exception {
        if (status.isIdle()) {
            if (endCheck != null) {
                LOG.info("event-time progress: the source reports idle; asking the broker whether every partition "
                        + "is read to its end before moving event time (now {})", lastEmitted);
                idleByFallback = false;
                awaitEnd(false);
                return;
            }
            // The source stops emitting watermarks now. Without a crash it would have reached this
            // value from the records it read; after a restore it has forgotten them.
            long target = allIdleTarget();
            LOG.info("event-time progress: the source reports idle; watermark {} -> {}", lastEmitted,
                    Math.max(lastEmitted, target));
            emit(target);
            if (idleByFallback) {
                // Evidence for the next reader: was the source late, or would it never have said it?
                LOG.info("event-time progress: the source reported idle {} ms after the fallback did",
                        (activityClock.relativeTimeNanos() - fallbackNanos) / 1_000_000L);
                idleByFallback = false;
            }
            inputIdle = true;
            announceIdleIfDue();
        } else {
            inputIdle = false;
            idleByFallback = false;
            if (awaitingEnd) {
                resumeAfterUnconfirmedIdle();
            }
            announceActive();
        }
    }

    private void announceActive() {
        if (announcedIdle) {
            announcedIdle = false;
            LOG.info("event-time progress: input active again at watermark {}", lastEmitted);
            output.emitWatermarkStatus(WatermarkStatus.ACTIVE);
        }
    }

    @Override
    public void notifyCheckpointComplete(long checkpointId) throws Exception {
        super.notifyCheckpointComplete(checkpointId);
        if (checkpointId >= checkpointBehindWatermark && !watermarkPassedEverything) {
            watermarkPassedEverything = true;
            announceIdleIfDue();
        }
    }

    @Override
    public void close() throws Exception {
        if (endProbeThread != null) {
            endProbeThread.submit(endCheck::close);
            endProbeThread.shutdown();
        }
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
        if (checkpointBehindWatermark == Long.MAX_VALUE) {
            // The barrier of this checkpoint leaves after the last watermark, on the same channels.
            checkpointBehindWatermark = context.getCheckpointId();
        }
        int subtask = getRuntimeContext().getTaskInfo().getIndexOfThisSubtask();
        state.clear();
        List<Tuple5<Integer, String, Long, Long, Boolean>> entries = new ArrayList<>();
        entries.add(Tuple5.of(subtask, SUMMARY, lastEmitted, 0L, !announcedIdle));
        for (Map.Entry<String, long[]> partition : partitions.entrySet()) {
            entries.add(Tuple5.of(subtask, partition.getKey(), partition.getValue()[0],
                    nextOffsets.getOrDefault(partition.getKey(), 0L), true));
        }
        state.update(entries);
    }
}
