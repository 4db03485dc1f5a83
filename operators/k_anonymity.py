"""The stateful k-anonymity ProcessWindowFunction: a thin adapter over privacy.kanonymity."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pyflink.common import Types
from pyflink.datastream import ProcessWindowFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from hierarchy.loader import Hierarchy
from operators.records import KeyedFrame, WindowOutput
from privacy.kanonymity import AnonymizationConfig, anonymize_window

log = logging.getLogger("ecg.anonymization")


class KAnonymityWindow(ProcessWindowFunction):
    """Anonymizes one (group, window): carry-over buffer, running means and counters live in keyed
    state (per group, across windows), so they are part of every checkpoint."""

    def __init__(self, hierarchy: Hierarchy, k: int, max_delay_windows: int, l_diversity: int) -> None:
        self._config = AnonymizationConfig(
            hierarchy=hierarchy, k=k, max_delay_windows=max_delay_windows, l_diversity=l_diversity
        )
        self._last: dict[str, int] = {}
        self._pending_by_key: dict[str, int] = {}

    def open(self, runtime_context: RuntimeContext) -> None:
        self._state_descriptor = ValueStateDescriptor("k-anonymity-key-state", Types.PICKLED_BYTE_ARRAY())
        metrics = runtime_context.get_metrics_group().add_group("ecg")
        # Gauges only: counters registered in a PyFlink window function are not reported by Flink
        # 2.0.2, so the per-window counters are kept by the sink (operators.sinks.WriteWindows).
        for name in ("suppression_rate_permille", "ncp_permille", "patients", "carried_patients"):
            metrics.gauge(name, lambda name=name: self._last.get(name, 0))
        # Frames held in carry-over buffers (keys seen by this subtask since it started).
        metrics.gauge("frames_pending_carry", lambda: sum(self._pending_by_key.values()))

    def process(
        self, key: str, context: ProcessWindowFunction.Context, elements: Iterable[KeyedFrame]
    ) -> Iterable[WindowOutput]:
        frames = [element.frame for element in elements]
        state = context.global_state().get_state(self._state_descriptor)
        result = anonymize_window(frames, state.value(), self._config)
        state.update(result.state)
        metrics = result.metrics
        self._pending_by_key[key] = len(result.state.carry)
        self._last = {
            "suppression_rate_permille": round(1000 * metrics.suppression_rate),
            "ncp_permille": round(1000 * metrics.ncp),
            "patients": metrics.distinct_patients,
            "carried_patients": metrics.patients_carried_out,
        }
        window = context.window()
        if not metrics.accounting_ok():
            # Never expected: loud, and counted by the sink; the window is still published as computed.
            log.error("accounting violated in window %s [%d, %d): %s", key, window.start, window.end, metrics.as_dict())
        # `#n` counts this key's windows across restarts (it lives in keyed state).
        log.info("window %s [%d, %d) #%d %s", key, window.start, window.end, result.state.windows, metrics.log_line())
        yield WindowOutput(
            group=key,
            window_start_ms=window.start,
            window_end_ms=window.end,
            published=result.published,
            metrics=metrics,
        )
