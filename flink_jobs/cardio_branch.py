"""The job's second output: heart-rate anomalies (`ecg-anomalies`) and federated model updates
(`ecg-model-updates`), attached to the `parsed` stream of its own job (flink_jobs/cardio_job.py) with one call:

    build_cardio_branch(settings, parsed, global_models_back(env, settings), production_branch_sinks(settings))

    parse side output (pid, ts) --key_by(pid)--> RequestPriors --key_by(round)--> MatchPriors
    ecg-model-updates, global only (ModelStreamWatermarks) --+--key_by(round)-------^   | Row(pid, 0, 0.0, notice)
                                                             |                          v
    parsed Row(pid, ts, fs, samples) ------------------------|---------------------> union, keyed by field 0
                                                             |              FrameBlocks (Java): a device's frames
                                                             |              of one CARDIO_BLOCK_SECONDS block
                                                             +--broadcast--------------> |
                                                   DetectAnomalies (KeyedBroadcastProcessFunction, uid cardio-detector)
                                                     | AnomalyEvent             | LocalUpdate / Join / Ready
                                                     |                          v RoundTicks (Java): + a tick
                                                     v                          v key_by(constant)
                                        PublishBranch -> ecg-anomalies   AggregateModels (FedAvg, uid fedavg)
                                        + InfluxDB ecg_anomaly_stats      v LocalUpdate / GlobalUpdate
                                                                         PublishBranch -> ecg-model-updates
                                                                         + InfluxDB ecg_model_stats

The global updates travel through Kafka and back as the broadcast input, so the detectors see what
every consumer of the topic sees. Round ticks (records behind the watermarks that let a round close)
re-arm the aggregator's round timers, which PyFlink can leave out of a checkpoint. A joining device
waits for the global round of its first frame; MatchPriors hands it that round as a record keyed by
its pid (federated.priors), so its release never depends on a timer. CARDIO_BRANCH=false leaves the branch's job out.

From the parse step to the detector a frame crosses between Java and Python twice (issue 24): the parse step
emits it already keyed, as Row(pid, ts, fs, samples) (operators.parse.ParseDeviceFrames, type
operators.records.DEVICE_FRAME), and `keyed_by_device` partitions that Row on the Java side. `key_by` with a Python
key selector would add a Python step after the union with the prior notices that cannot be chained with the
parse step (two more crossings and two more pickles of every frame). FrameBlocks (operators/frame_blocks.py) then
hands the detector a device's frames of one block at once: one Python call, one keyed-state read and write and one
run of the beat detector per block instead of per frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyflink.common import Row, Types
from pyflink.datastream import DataStream, KeyedStream, StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway

from anomaly.beats import CardioBeats
from anomaly.detector import DetectorConfig
from anomaly.device import DeviceConfig
from anomaly.events import AnomalyEvent
from connectors.config import Settings
from connectors.influxdb import InfluxOptions
from connectors.kafka import build_model_source, build_string_sink, model_watermark_strategy
from federated.messages import parse_global
from federated.priors import PriorNotice
from federated.rounds import RoundClock
from operators.anomaly_models import (
    GLOBAL_MODELS,
    AggregateModels,
    DetectAnomalies,
    MatchPriors,
    PublishBranch,
    RequestPriors,
)
from operators.frame_blocks import with_frame_blocks
from operators.parse import FRAME_HEADS
from operators.records import DEVICE_FRAME, pass_through_row
from operators.round_ticks import with_round_ticks


def device_config(settings: Settings) -> DeviceConfig:
    return DeviceConfig(
        detector=DetectorConfig(
            z_threshold=settings.anomaly_z_threshold,
            warmup_windows=settings.anomaly_warmup_windows,
            tachy_bpm=settings.anomaly_tachy_bpm,
            brady_bpm=settings.anomaly_brady_bpm,
            asystole_ms=round(settings.anomaly_asystole_seconds * 1000),
            min_episode_ms=round(settings.anomaly_min_episode_seconds * 1000),
        ),
        clock=round_clock(settings),
        use_prior=settings.model_global_prior,
        prior_timeout_ms=round(settings.model_prior_timeout_seconds * 1000),
        noise_mv=settings.anomaly_noise_mv,
        dp_clip_norm=settings.model_dp_clip_norm,
        dp_noise_multiplier=settings.model_dp_noise_multiplier,
        dp_secret=settings.pseudonym_secret_bytes if settings.model_dp_clip_norm > 0 else b"",
        block_ms=settings.cardio_block_seconds * 1000,
    )


def round_clock(settings: Settings) -> RoundClock:
    return RoundClock(settings.model_update_seconds * 1000, settings.model_grace_seconds * 1000)


def _is_anomaly(value: Any) -> bool:
    return isinstance(value, AnomalyEvent)


def _is_model_signal(value: Any) -> bool:
    return not isinstance(value, AnomalyEvent)


def _is_global(text: str) -> bool:
    return parse_global(text) is not None


def _round_of_global(text: str) -> int:
    update = parse_global(text)
    assert update is not None  # filtered by _is_global
    return update.round


def _by_device(notice: PriorNotice) -> Row:
    return pass_through_row(notice.pid, notice)


def keyed_by_device(stream: DataStream) -> KeyedStream:
    """`stream` (Row(pid, ...), type DEVICE_FRAME) keyed by its pid: what DataStream.key_by builds after its
    Python key-adding step (the same Java key selector on field 0, the same key type, so the detector's
    keyed state is the one key_by(pid) gave it), without that step."""
    j_keyed = stream._j_data_stream.keyBy(get_gateway().jvm.KeyByKeySelector(),
                                          Types.ROW([Types.STRING()]).get_java_type_info())
    return KeyedStream(j_keyed, DEVICE_FRAME, stream)


def needs_frame_heads(settings: Settings) -> bool:
    """Devices wait for a prior only with the branch and MODEL_GLOBAL_PRIOR on."""
    return settings.cardio_branch and settings.model_global_prior


@dataclass(frozen=True)
class BranchSinks:
    """Where the branch's outputs go; each attaches its sink(s) to the stream it is given.

    Injected like the anonymization job's JobSinks, so that tests run the real operators on collections with
    collecting sinks (testkit/pipeline.py run_cardio_pipeline); production: `production_branch_sinks`."""

    anomalies: Callable[[DataStream], None]  # AnomalyEvent per episode (pickled)
    model_updates: Callable[[DataStream], None]  # LocalUpdate / GlobalUpdate from the FedAvg aggregator (pickled)
    dead_letters: Callable[[DataStream], None]  # the parse step's dead-letter JSON strings


def production_branch_sinks(settings: Settings) -> BranchSinks:
    """Kafka (ecg-anomalies, ecg-model-updates) after one InfluxDB statistics point per record; dead letters are
    the anonymization job's (it reads the same input), so this job drops its own. The uids are the
    checkpointed ones: do not change them."""
    influx = InfluxOptions.from_settings(settings).for_branch()  # per-patient statistics: INFLUX_BRANCH_BUCKET

    def anomaly_sink(anomalies: DataStream) -> None:
        (anomalies.process(PublishBranch(influx, "anomalies"), Types.STRING())
         .name("anomalies: InfluxDB ecg_anomaly_stats").uid("cardio-anomaly-publish")
         .sink_to(build_string_sink(settings, settings.kafka_anomaly_topic,
                                    f"{settings.kafka_transactional_id_prefix}-anomalies"))
         .name("kafka: " + settings.kafka_anomaly_topic).uid("cardio-anomaly-sink"))

    def model_sink(updates: DataStream) -> None:
        (updates.process(PublishBranch(influx, "model_updates"), Types.STRING())
         .name("model updates: InfluxDB ecg_model_stats").uid("cardio-model-publish")
         .sink_to(build_string_sink(settings, settings.kafka_model_topic,
                                    f"{settings.kafka_transactional_id_prefix}-model-updates"))
         .name("kafka: " + settings.kafka_model_topic).uid("cardio-model-sink"))

    def drop(_: DataStream) -> None:
        return None

    return BranchSinks(anomalies=anomaly_sink, model_updates=model_sink, dead_letters=drop)


def global_models_back(env: StreamExecutionEnvironment, settings: Settings) -> DataStream:
    """The global updates as every consumer of ecg-model-updates reads them: the branch's broadcast input."""
    return (
        env.from_source(build_model_source(settings), model_watermark_strategy(),
                        "kafka: " + settings.kafka_model_topic + " (global models back)")
        .uid("cardio-model-source")
        .filter(_is_global).name("global updates only").uid("cardio-model-filter")
    )


def build_cardio_branch(settings: Settings, parsed: DataStream, globals_back: DataStream,
                        sinks: BranchSinks) -> None:
    """The branch's operators between `parsed` (Row(pid, ts, fs, samples) of type DEVICE_FRAME, from
    operators.parse.ParseDeviceFrames, with the FRAME_HEADS side output when
    `needs_frame_heads`), `globals_back` (global update JSON texts, never constraining event time:
    `global_models_back` in production) and `sinks`."""
    if not settings.cardio_branch:
        return
    device_input = parsed
    if needs_frame_heads(settings):
        clock = round_clock(settings)
        notices = (
            parsed.get_side_output(FRAME_HEADS)
            .key_by(lambda head: head[0], key_type=Types.STRING())
            .process(RequestPriors(clock), Types.PICKLED_BYTE_ARRAY())
            .name("prior requests (first frame per pid)").uid("cardio-prior-requests")
            .key_by(lambda request: request.round, key_type=Types.LONG())
            .connect(globals_back.key_by(_round_of_global, key_type=Types.LONG()))
            .process(MatchPriors(), Types.PICKLED_BYTE_ARRAY())
            .name("prior notices (requests x global updates, per round)").uid("cardio-prior-match")
            .map(_by_device, DEVICE_FRAME).name("prior notices by pid").uid("cardio-prior-notices-by-pid")
        )
        device_input = parsed.union(notices)
    config = device_config(settings)
    blocks = with_frame_blocks(keyed_by_device(device_input), block_ms=config.block_ms, name="frame blocks (per pid)",
                               uid="cardio-frame-blocks")
    branch = (
        blocks
        .connect(globals_back.broadcast(GLOBAL_MODELS))
        .process(DetectAnomalies(config, CardioBeats()), Types.PICKLED_BYTE_ARRAY())
        .name("beats + anomalies + local models (per pid)").uid("cardio-detector")
    )
    sinks.anomalies(branch.filter(_is_anomaly).name("anomalies").uid("cardio-anomalies"))
    signals = branch.filter(_is_model_signal).name("model signals").uid("cardio-model-signals")
    sinks.model_updates(
        with_round_ticks(signals, round_clock(settings)).uid("cardio-round-ticks")
        .key_by(lambda _: "fedavg", key_type=Types.STRING())
        .process(AggregateModels(round_clock(settings), settings.model_dp_clip_norm > 0), Types.PICKLED_BYTE_ARRAY())
        .name("FedAvg aggregator").uid("fedavg")
    )
