"""The stateful k-anonymity ProcessWindowFunction: a thin adapter over privacy.kanonymity."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

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

    def open(self, runtime_context: RuntimeContext) -> None:
        self._state_descriptor = ValueStateDescriptor("k-anonymity-key-state", Types.PICKLED_BYTE_ARRAY())
        metrics = runtime_context.get_metrics_group().add_group("ecg")
        self._counters = {
            name: metrics.counter(name)
            for name in (
                "windows",
                "frames_anonymized",
                "frames_published",
                "frames_suppressed",
                "frames_carried_in",
                "frames_carried_out",
                "samples_published",
                "samples_imputed",
            )
        }
        self._level_counters = {level: metrics.counter(f"frames_level_{level}") for level in range(1, 10)}
        for name in ("suppression_rate_permille", "ncp_permille", "patients", "carried_patients"):
            metrics.gauge(name, lambda name=name: self._last.get(name, 0))

    def process(
        self, key: str, context: ProcessWindowFunction.Context, elements: Iterable[KeyedFrame]
    ) -> Iterable[WindowOutput]:
        frames = [element.frame for element in elements]
        state = context.global_state().get_state(self._state_descriptor)
        result = anonymize_window(frames, state.value(), self._config)
        state.update(result.state)
        metrics = result.metrics
        self._record(metrics)
        window = context.window()
        # `#n` counts this key's windows across restarts (it lives in keyed state).
        log.info("window %s [%d, %d) #%d %s", key, window.start, window.end, result.state.windows, metrics.log_line())
        yield WindowOutput(
            group=key,
            window_start_ms=window.start,
            window_end_ms=window.end,
            published=result.published,
            metrics=metrics,
        )

    def _record(self, metrics: Any) -> None:
        self._counters["windows"].inc()
        self._counters["frames_anonymized"].inc(metrics.frames_in)
        self._counters["frames_published"].inc(metrics.frames_published)
        self._counters["frames_suppressed"].inc(metrics.frames_suppressed)
        self._counters["frames_carried_in"].inc(metrics.frames_carried_in)
        self._counters["frames_carried_out"].inc(metrics.frames_carried_out)
        self._counters["samples_published"].inc(metrics.samples_published)
        self._counters["samples_imputed"].inc(metrics.samples_suppressed)
        for level, count in metrics.frames_by_level.items():
            self._level_counters[int(level)].inc(int(count))
        self._last = {
            "suppression_rate_permille": round(1000 * metrics.suppression_rate),
            "ncp_permille": round(1000 * metrics.ncp),
            "patients": metrics.distinct_patients,
            "carried_patients": metrics.patients_carried_out,
        }
