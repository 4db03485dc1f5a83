package io.ecgflinkanon.connectors;

import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
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
}
