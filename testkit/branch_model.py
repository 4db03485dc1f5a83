"""The whole branch run sequentially in event time: the reference model of the Flink job.

Each device's frames are cut into the blocks the job forms (anomaly.device.frame_blocks, DeviceConfig.block_ms)
and the blocks processed in the event-time order of their first frames (ties in arrival order); before a block
whose first frame has time t the aggregator closes what a watermark of t - 1 allows, and a joining device finds
its prior at once (in event-time order it is always there: its round closed before t). The job reaches the same
outputs with arrival in any interleaving, waits for priors and restores (docs/anomalies.md), so
tests and benchmarks compare the job's event and update ids with these.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from anomaly.beats import BeatSource
from anomaly.device import DeviceConfig, DeviceProcessor, DeviceState, FrameInput, frame_blocks
from anomaly.events import AnomalyEvent
from federated.aggregator import Aggregator, AggregatorState
from federated.messages import GlobalUpdate, JoinSignal, LocalUpdate, ReadySignal

END_OF_TIME_MS = 2**62


@dataclass
class BranchRun:
    anomalies: list[AnomalyEvent] = field(default_factory=list)
    local_updates: list[LocalUpdate] = field(default_factory=list)
    global_updates: list[GlobalUpdate] = field(default_factory=list)
    devices: dict[str, DeviceState] = field(default_factory=dict)
    aggregator: AggregatorState = field(default_factory=AggregatorState)

    def globals_by_round(self) -> dict[int, GlobalUpdate]:
        return {update.round: update for update in self.global_updates}


def run_branch(frames: Iterable[FrameInput], config: DeviceConfig, beat_source: BeatSource) -> BranchRun:
    run = BranchRun()
    processor = DeviceProcessor(config, beat_source)
    aggregator = Aggregator(config.clock, dp=config.dp_clip_norm > 0)
    published: dict[int, GlobalUpdate] = {}

    def publish(outputs: Iterable[LocalUpdate | GlobalUpdate]) -> None:
        for output in outputs:
            if isinstance(output, GlobalUpdate):
                run.global_updates.append(output)
                published[output.round] = output
            # local updates are collected where the device emits them

    by_device: dict[str, list[FrameInput]] = {}
    for frame in sorted(frames, key=lambda frame: frame.ts_ms):  # stable: ties keep their arrival order
        by_device.setdefault(frame.pid, []).append(frame)
    blocks = [block for device_frames in by_device.values() for block in frame_blocks(device_frames, config.block_ms)]
    for block in sorted(blocks, key=lambda block: block[0].ts_ms):
        pid = block[0].pid
        watermark = block[0].ts_ms - 1
        publish(aggregator.close(run.aggregator, watermark))
        state, outputs = processor.on_frames(run.devices.get(pid), block, published.get)
        run.devices[pid] = state
        while outputs:
            for output in outputs:
                if isinstance(output, AnomalyEvent):
                    run.anomalies.append(output)
                    continue
                if isinstance(output, LocalUpdate):
                    run.local_updates.append(output)
                assert isinstance(output, LocalUpdate | JoinSignal | ReadySignal)
                publish(aggregator.on_signal(run.aggregator, output, watermark))
            # A joining device's prior round is published in answer to its join: look again.
            outputs = list(processor.on_poll(state, published.get, 0))
        if state.phase != "live":
            raise AssertionError(f"device {pid} waits for round {state.wanted_round}, which is not published")
    publish(aggregator.close(run.aggregator, END_OF_TIME_MS))
    return run
