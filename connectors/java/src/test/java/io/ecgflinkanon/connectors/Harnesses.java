package io.ecgflinkanon.connectors;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.AbstractStreamOperatorTestHarness;

/** What every operator test does to start a harness. */
final class Harnesses {
    private Harnesses() {}

    /** {@code harness} set up and opened, with the state of {@code restoreFrom}, or empty when it is null. */
    static <H extends AbstractStreamOperatorTestHarness<?>> H opened(H harness, OperatorSubtaskState restoreFrom)
            throws Exception {
        harness.setup();
        if (restoreFrom == null) {
            harness.initializeEmptyState();
        } else {
            harness.initializeState(restoreFrom);
        }
        harness.open();
        return harness;
    }

    /**
     * The harness's output so far, in order, which it then forgets: "W<ts>" for a watermark, {@code record} of
     * every record.
     */
    static List<String> drained(AbstractStreamOperatorTestHarness<?> harness,
            Function<StreamRecord<?>, String> record) {
        List<String> seen = new ArrayList<>();
        for (Object element : harness.getOutput()) {
            seen.add(element instanceof Watermark
                    ? "W" + ((Watermark) element).getTimestamp()
                    : record.apply((StreamRecord<?>) element));
        }
        harness.getOutput().clear();
        return seen;
    }
}
