package io.ecgflinkanon.connectors;

import java.util.Collections;
import java.util.HashMap;
import java.util.Map;

/**
 * The Kafka partitions the source reader of this task was given, with the offset it starts reading each from
 * ("topic#partition" -> offset; negative: not resolved). {@link PartitionTrackingSource}'s reader records them;
 * {@link EventTimeProgress}, chained after the source, reads them: a partition the source has not delivered a
 * record of yet is otherwise known only to the source. Both run on the task's thread (the reader gets its splits
 * through the task's mailbox), so the record is per thread: one per source task, none shared between tasks.
 */
final class AssignedPartitions {
    private static final ThreadLocal<Map<String, Long>> ON_THIS_TASK = ThreadLocal.withInitial(HashMap::new);

    private AssignedPartitions() {}

    static void add(String partition, long startingOffset) {
        ON_THIS_TASK.get().put(partition, startingOffset);
    }

    /** What this thread's reader was given (empty: no tracked reader on this thread, e.g. a test harness). */
    static Map<String, Long> onThisTask() {
        return Collections.unmodifiableMap(ON_THIS_TASK.get());
    }

    static void clear() {
        ON_THIS_TASK.remove();
    }
}
