"""Thin Flink adapters of the anomaly / federated-learning branch (the logic is in anomaly/ and
federated/, pure and unit-tested; flink_jobs/cardio_branch.py wires these together)."""

from __future__ import annotations

import logging
from typing import Any

from pyflink.common import Types
from pyflink.common.time import Time
from pyflink.datastream import (
    KeyedBroadcastProcessFunction,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    ProcessFunction,
    RuntimeContext,
)
from pyflink.datastream.state import MapStateDescriptor, StateTtlConfig, ValueStateDescriptor

from anomaly.beats import BeatSource
from anomaly.device import WAITING, DeviceConfig, DeviceOutput, DeviceProcessor, DeviceState
from anomaly.events import KINDS, AnomalyEvent
from connectors.influxdb import InfluxOptions, LineWriter, make_writer, point_line
from federated.aggregator import Aggregator, AggregatorState
from federated.messages import GlobalUpdate, LocalUpdate, ModelSignal, parse_global
from federated.priors import PriorNotice, PriorRequest, RoundPriors, on_global, on_request
from federated.rounds import RoundClock
from operators.records import block_frames

log = logging.getLogger("ecg.cardio")

# Broadcast state: global round -> the update's JSON text, as read from ecg-model-updates.
GLOBAL_MODELS = MapStateDescriptor("global-models", Types.LONG(), Types.STRING())
GLOBAL_HISTORY_ROUNDS = 1440  # a day of rounds at 60 s; a device waits for a round near its join time
# A round's prior is asked for by devices joining near its close; a day later nobody asks any more.
PRIOR_RETENTION = Time.days(1)
ANOMALY_MEASUREMENT = "ecg_anomaly_stats"
MODEL_MEASUREMENT = "ecg_model_stats"


class DetectAnomalies(KeyedBroadcastProcessFunction):
    """Keyed by pid: one anomaly.device.DeviceState per device in keyed state; the global models in
    broadcast state. The keyed input carries the device's frames in blocks (connectors/java FrameBlocks: the pickle
    of (pid, [(ts_ms, fs, samples), ...])) and its PriorNotice (federated.priors), which releases a waiting device.
    Emits AnomalyEvent, LocalUpdate, JoinSignal and ReadySignal objects."""

    def __init__(self, config: DeviceConfig, beat_source: BeatSource, poll_ms: int = 200) -> None:
        self._config = config
        self._beat_source = beat_source
        self._poll_ms = poll_ms
        self._parsed: dict[str, GlobalUpdate | None] = {}
        self._latest_round = 0
        self._lag_ms = 0
        self._waiting: set[str] = set()

    def open(self, runtime_context: RuntimeContext) -> None:
        self._processor = DeviceProcessor(self._config, self._beat_source)
        self._state = runtime_context.get_state(ValueStateDescriptor("cardio-device", Types.PICKLED_BYTE_ARRAY()))
        self._notice = runtime_context.get_state(ValueStateDescriptor("cardio-early-prior", Types.STRING()))
        metrics = runtime_context.get_metrics_group().add_group("ecg")
        self._frames_in = metrics.counter("cardio_frames_in")
        self._blocks_in = metrics.counter("cardio_blocks_in")
        self._frames_out_of_order = metrics.counter("cardio_frames_out_of_order")
        self._prior_timeouts = metrics.counter("model_prior_timeouts")
        self._anomalies = {kind: metrics.counter(f"anomalies_{kind}") for kind in KINDS}
        for counter in (self._frames_out_of_order, self._prior_timeouts, *self._anomalies.values()):
            counter.inc(0)  # reported (as 0) from the start
        metrics.gauge("model_prior_round", lambda: self._latest_round)
        metrics.gauge("model_update_lag_ms", lambda: self._lag_ms)
        metrics.gauge("devices_waiting_for_prior", lambda: len(self._waiting))

    def _lookup(self, ctx: Any, notice_text: str | None = None) -> Any:
        """Round -> its global update: from a prior notice's text if it is that round, else from the
        broadcast state."""
        models = ctx.get_broadcast_state(GLOBAL_MODELS)

        def lookup(round_number: int) -> GlobalUpdate | None:
            if notice_text is not None:
                update = parse_global(notice_text)
                if update is not None and update.round == round_number:
                    return update
            if not models.contains(round_number):
                return None
            text = models.get(round_number)
            if text not in self._parsed:
                if len(self._parsed) > 64:
                    self._parsed.clear()
                self._parsed[text] = parse_global(text)
            return self._parsed[text]

        return lookup

    def process_element(self, value: tuple[str, list[tuple[int, float, bytes]]] | PriorNotice,  # type: ignore[no-untyped-def]
                        ctx: KeyedBroadcastProcessFunction.ReadOnlyContext):
        if isinstance(value, PriorNotice):
            yield from self._on_notice(value, ctx)
            return
        frames = block_frames(value)
        self._frames_in.inc(len(frames))
        self._blocks_in.inc()
        state: DeviceState | None = self._state.value()
        is_new = state is None
        out_of_order = 0 if state is None else state.frames_out_of_order
        lookup = self._lookup(ctx)
        if is_new:
            early = self._notice.value()  # the notice may overtake the first frame
            if early is not None:
                lookup = self._lookup(ctx, early)
                self._notice.clear()
        state, outputs = self._processor.on_frames(state, frames, lookup)
        self._frames_out_of_order.inc(state.frames_out_of_order - out_of_order)
        if state.phase == WAITING:
            self._waiting.add(state.pid)
            if is_new:
                ctx.timer_service().register_processing_time_timer(
                    ctx.timer_service().current_processing_time() + self._poll_ms)
        else:
            self._waiting.discard(state.pid)
        self._state.update(state)
        yield from self._emit(outputs)

    def _on_notice(self, notice: PriorNotice, ctx: Any):  # type: ignore[no-untyped-def]
        """The device's prior, handed to it by round (federated.priors): released without any timer."""
        state: DeviceState | None = self._state.value()
        if state is None:
            self._notice.update(notice.text)
            return
        if state.phase != WAITING or state.wanted_round != notice.round:
            return
        yield from self._poll(state, self._lookup(ctx, notice.text), 0)

    def on_timer(self, timestamp: int, ctx: KeyedBroadcastProcessFunction.OnTimerContext):  # type: ignore[no-untyped-def]
        # Best effort: PyFlink may lose a timer registered just before a checkpoint; the prior notices
        # release the devices, these polls only count the wait and time it out.
        state: DeviceState | None = self._state.value()
        if state is None or state.phase != WAITING:
            return
        yield from self._poll(state, self._lookup(ctx), self._poll_ms)
        if state.phase == WAITING:
            ctx.timer_service().register_processing_time_timer(timestamp + self._poll_ms)
            if state.waited_ms % 10_000 < self._poll_ms:
                log.warning("device %s has waited %d ms for global round %s", state.pid, state.waited_ms,
                            state.wanted_round)

    def _poll(self, state: DeviceState, lookup: Any, waited_ms: int):  # type: ignore[no-untyped-def]
        outputs = self._processor.on_poll(state, lookup, waited_ms)
        if state.phase != WAITING:
            self._waiting.discard(state.pid)
            if state.prior_timed_out:
                self._prior_timeouts.inc()
                log.warning("device %s: no global round %s after %d ms; started cold", state.pid,
                            state.wanted_round, state.waited_ms)
        self._state.update(state)
        yield from self._emit(outputs)

    def process_broadcast_element(self, value: str, ctx: KeyedBroadcastProcessFunction.Context):  # type: ignore[no-untyped-def]
        update = parse_global(value)
        if update is None:
            return
        models = ctx.get_broadcast_state(GLOBAL_MODELS)
        if not models.contains(update.round):
            models.put(update.round, value)
        if update.round > self._latest_round:
            self._latest_round = update.round
            # Event-time lag: how far the data had moved past the round's close when it got here.
            self._lag_ms = max(0, ctx.current_watermark() - update.ts_ms)
            stale = [r for r in models.keys() if r < update.round - GLOBAL_HISTORY_ROUNDS]
            for old in stale:
                models.remove(old)

    def _emit(self, outputs: list[DeviceOutput]):  # type: ignore[no-untyped-def]
        for output in outputs:
            if isinstance(output, AnomalyEvent):
                self._anomalies[output.kind].inc()
            yield output


class RequestPriors(KeyedProcessFunction):
    """Keyed by pid, on (pid, event time) of a device's first valid frame per parse subtask (again after a
    restore): the first one of a device becomes a PriorRequest for the round the device will wait for (the
    same rule as anomaly.device), later ones are ignored."""

    def __init__(self, clock: RoundClock) -> None:
        self._clock = clock

    def open(self, runtime_context: RuntimeContext) -> None:
        self._seen = runtime_context.get_state(ValueStateDescriptor("cardio-prior-requested", Types.BOOLEAN()))

    def process_element(self, value: tuple[str, int], ctx: KeyedProcessFunction.Context):  # type: ignore[no-untyped-def]
        if self._seen.value():
            return
        self._seen.update(True)
        yield PriorRequest(value[0], self._clock.prior_round(value[1]))


class MatchPriors(KeyedCoProcessFunction):
    """Keyed by round: PriorRequests (input 1) meet the round's global update read back from the topic
    (input 2, its JSON text); each match is a PriorNotice for the device (federated.priors)."""

    def open(self, runtime_context: RuntimeContext) -> None:
        descriptor = ValueStateDescriptor("cardio-round-priors", Types.PICKLED_BYTE_ARRAY())
        descriptor.enable_time_to_live(StateTtlConfig.new_builder(PRIOR_RETENTION).build())
        self._state = runtime_context.get_state(descriptor)
        metrics = runtime_context.get_metrics_group().add_group("ecg")
        self._notices = metrics.counter("model_prior_notices")
        self._notices.inc(0)

    def _answer(self, notices: list[PriorNotice], state: RoundPriors):  # type: ignore[no-untyped-def]
        self._state.update(state)
        self._notices.inc(len(notices))
        yield from notices

    def process_element1(self, value: PriorRequest, ctx: KeyedCoProcessFunction.Context):  # type: ignore[no-untyped-def]
        state: RoundPriors = self._state.value() or RoundPriors()
        yield from self._answer(on_request(state, value), state)

    def process_element2(self, value: str, ctx: KeyedCoProcessFunction.Context):  # type: ignore[no-untyped-def]
        update = parse_global(value)
        if update is None:
            return
        state: RoundPriors = self._state.value() or RoundPriors()
        yield from self._answer(on_global(state, update.round, value), state)


class AggregateModels(KeyedProcessFunction):
    """Keyed by one constant: the FedAvg aggregator (federated.aggregator) with its state in keyed
    state and one event-time timer per open round. Emits LocalUpdate and GlobalUpdate objects.

    Its input also carries round ticks (a Python int, from connectors/java RoundTicks, see
    flink_jobs/cardio_branch.py) behind every watermark that makes a round closable and behind the first
    watermark after a (re)start: a tick closes what the operator's own watermark allows and registers again
    the timer of every open round, since PyFlink can leave a timer registered just before a barrier out of
    the checkpoint (issue 19). A timer at or below the watermark fires with the watermark's next advance."""

    def __init__(self, clock: RoundClock, dp: bool) -> None:
        self._aggregator = Aggregator(clock, dp)
        self._last: dict[str, int] = {}

    def open(self, runtime_context: RuntimeContext) -> None:
        self._state = runtime_context.get_state(ValueStateDescriptor("fedavg", Types.PICKLED_BYTE_ARRAY()))
        metrics = runtime_context.get_metrics_group().add_group("ecg")
        self._late = metrics.counter("model_updates_late")
        self._late.inc(0)
        self._ticks = metrics.counter("model_round_ticks")
        self._ticks.inc(0)
        for name in ("model_round", "model_clients", "model_pending_devices", "model_open_rounds",
                     "model_closed_through", "model_aggregator_watermark_s"):
            metrics.gauge(name, lambda name=name: self._last.get(name, 0))

    def _run(self, signal: ModelSignal | None, watermark: int, ctx: Any,
             reschedule: bool = True) -> list[LocalUpdate | GlobalUpdate]:
        state: AggregatorState = self._state.value() or AggregatorState()
        late = state.late_updates
        if signal is None:
            out = self._aggregator.close(state, watermark)
        else:
            out = self._aggregator.on_signal(state, signal, watermark)
        if reschedule:
            for timer in self._aggregator.rounds_to_schedule(state):
                ctx.timer_service().register_event_time_timer(timer)
        self._late.inc(state.late_updates - late)
        for update in out:
            if isinstance(update, GlobalUpdate):
                self._last["model_round"] = max(self._last.get("model_round", 0), update.round)
                self._last["model_clients"] = update.clients
        self._last["model_pending_devices"] = len(state.pending)
        # Rounds waiting to close, the newest closed one and the event time the aggregator has seen
        # (seconds: a gauge of epoch milliseconds would not fit a float metric exactly).
        self._last["model_open_rounds"] = len(state.activity_rounds())
        self._last["model_closed_through"] = -1 if state.closed_through is None else state.closed_through
        self._last["model_aggregator_watermark_s"] = max(watermark, 0) // 1000
        self._state.update(state)
        return out

    def process_element(self, value: ModelSignal | int, ctx: KeyedProcessFunction.Context):  # type: ignore[no-untyped-def]
        watermark = ctx.timer_service().current_watermark()
        if isinstance(value, int):  # a round tick: its value is one upstream subtask's watermark, not ours
            self._ticks.inc()
            yield from self._run(None, watermark, ctx)
        else:
            yield from self._run(value, watermark, ctx)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):  # type: ignore[no-untyped-def]
        yield from self._run(None, timestamp, ctx, reschedule=False)


def anomaly_line(event: AnomalyEvent) -> str:
    window_s = (event.window_end_ms - event.window_start_ms) // 1000
    fields: dict[str, float | int | bool] = {"count": 1, "window_s": window_s}
    if event.hr_bpm is not None:
        fields["hr_bpm"] = float(event.hr_bpm)
    if event.z_score is not None:
        fields["z_score"] = float(event.z_score)
    return point_line(ANOMALY_MEASUREMENT, {"kind": event.kind, "pid": event.pid}, fields,
                      event.window_start_ms * 1_000_000)


def model_line(update: LocalUpdate | GlobalUpdate) -> str:
    fields: dict[str, float | int | bool] = {"round": update.round, "n_samples": update.n_samples, "dp": update.dp}
    if update.weights is not None:
        mean, std = update.weights.hr30
        fields.update(hr_mean=mean, hr_std=std, ar_lag1=update.weights.ar[0])
    if isinstance(update, GlobalUpdate):
        fields["clients"] = update.clients
        return point_line(MODEL_MEASUREMENT, {"kind": "global"}, fields, update.ts_ms * 1_000_000)
    return point_line(MODEL_MEASUREMENT, {"kind": "local", "pid": update.pid}, fields, update.ts_ms * 1_000_000)


class PublishBranch(ProcessFunction):
    """Anomaly events / model updates -> their JSON for Kafka, and one InfluxDB point each (written
    synchronously, so a completed checkpoint has no unwritten point; replays rewrite the same point)."""

    def __init__(self, influx: InfluxOptions, what: str) -> None:
        self._options = influx
        self._what = what
        self._writer: LineWriter | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._writer = make_writer(self._options)
        metrics = runtime_context.get_metrics_group().add_group("ecg")
        self._published = metrics.counter(f"{self._what}_published")
        self._points = metrics.counter(f"{self._what}_influx_points")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def process_element(self, value: Any, ctx: ProcessFunction.Context):  # type: ignore[no-untyped-def]
        assert self._writer is not None
        line = anomaly_line(value) if isinstance(value, AnomalyEvent) else model_line(value)
        self._writer.write_lines([line])
        self._points.inc()
        self._published.inc()
        yield value.to_json()
