"""ECG device simulator: virtual patients streaming frames to the `ecg-raw` topic.

Each patient has quasi-identifiers drawn from a realistic hospital population (devstack.population:
census age pyramid skewed to hospital ages, per-ward sex ratios, a few dominant zip prefixes and a
long tail; with ``--churn`` patients come and go) and a waveform cut from MIT-BIH record 208
(per-patient offset, amplitude and baseline) or a synthetic ECG. One message per device per frame,
Kafka key = device_id, record timestamp = frame ts. Everything is deterministic for a given `--seed`.

    python -m devstack.simulator --patients 20 --duration 60 --bad-fraction 0.02 --end-of-stream
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from connectors.config import ConfigError
from connectors.kafka_security import KafkaSecurity
from contract.frames import CONTROL_END_OF_STREAM, MAX_MESSAGE_BYTES, MAX_SAMPLES
from devstack.bad_input_corpus import BadInput, injectable_bad_inputs
from devstack.ecg_data import MITBIH_FS_HZ, load_mitbih_208, synthetic_ecg
from devstack.population import draw_population

# Just before 2100-01-01 (the contract's upper ts bound): later than any data, so the watermark
# of every partition passes all windows, yet still a timestamp every tool can print.
END_OF_STREAM_TS_MS = 4_102_444_799_999
DEFAULT_TOPIC = "ecg-raw"
DEFAULT_BOOTSTRAP = "localhost:9092"
DEFAULT_WINDOW_SECONDS = 10
SAMPLE_DECIMALS = 3  # µV resolution; the MIT-BIH ADC step is 5 µV

KIND_FRAME = "frame"
KIND_BAD = "bad"
KIND_CONTROL = "control"

FIRST_NAMES = (
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannes", "Ida", "Jonas", "Karla",
    "Leon", "Mia", "Noah", "Olga", "Paul", "Quinn", "Rosa", "Samir", "Tina", "Umut", "Vera", "Wim", "Yara",
)  # fmt: skip
LAST_NAMES = (
    "Adler", "Becker", "Cohen", "Demir", "Engel", "Fischer", "Garcia", "Hoffmann", "Ivanova", "Jansen",
    "Kowalski", "Lange", "Meyer", "Nguyen", "Otto", "Peters", "Richter", "Schulz", "Weber", "Zimmermann",
)  # fmt: skip

# Streams of randomness, separate so that e.g. changing --bad-fraction keeps patients and signals.
_STREAM_PATIENTS, _STREAM_SIGNAL, _STREAM_BAD, _STREAM_CHURN, _STREAM_EPISODE = 1, 2, 3, 4, 5

# Labelled episodes (ground truth for the anomaly evaluation). Tachycardia and bradycardia play the
# device's signal faster or slower, so that its mean heart rate becomes the target (record 208 runs
# at ~99 bpm: x1.6 for 160 bpm); asystole is a flat line at the device's baseline; a noise burst adds
# Gaussian noise (0.3 mV).
EPISODE_KINDS = ("tachycardia", "bradycardia", "asystole", "noise")
EPISODE_TARGET_BPM = {"tachycardia": 160.0, "bradycardia": 35.0}
NOISE_BURST_MV = 0.3
FLAT_NOISE_MV = 0.005


@dataclass(frozen=True)
class Episode:
    """``kind`` on device ``device_id`` for [start_s, start_s + duration_s) after the run's start
    (whole frames: a frame belongs to the episode when its start does)."""

    device_id: str
    kind: str
    start_s: float
    duration_s: float

    def __post_init__(self) -> None:
        if self.kind not in EPISODE_KINDS:
            raise ValueError(f"episode kind must be one of {', '.join(EPISODE_KINDS)}")
        if self.start_s < 0 or self.duration_s <= 0:
            raise ValueError("episode start must be >= 0 and duration > 0")

    @classmethod
    def parse(cls, text: str) -> Episode:
        """``DEVICE:KIND:START_S:DURATION_S``, e.g. ``dev-0003:tachycardia:90:60``."""
        device_id, kind, start, duration = text.rsplit(":", 3)
        return cls(device_id, kind, float(start), float(duration))


@dataclass(frozen=True)
class SimConfig:
    patients: int = 20
    duration_s: float = 60.0
    frame_seconds: float = 1.0
    fs: float = float(MITBIH_FS_HZ)
    seed: int = 0
    start_ms: int | None = None  # None: now, aligned down to a window boundary
    window_seconds: int = DEFAULT_WINDOW_SECONDS
    sites: int = 4
    synthetic: bool = False
    hr_fraction: float = 0.5  # fraction of devices that report hr_bpm
    bad_fraction: float = 0.0  # fraction of data messages replaced by corpus entries
    end_of_stream: bool = False
    partitions: int = 1  # end-of-stream messages go to each of these partitions
    end_of_stream_ts_ms: int = END_OF_STREAM_TS_MS
    ecg_path: Path | None = None  # default: devstack.ecg_data.ensure_ecg_dat()
    churn: bool = False  # patients present for 40-100 % of the run, some wards start late / stop early
    episodes: tuple[Episode, ...] = ()
    joins: tuple[tuple[str, float], ...] = ()  # (device_id, seconds): the device sends from then on

    @property
    def frame_ms(self) -> int:
        return round(self.frame_seconds * 1000)

    @property
    def samples_per_frame(self) -> int:
        return round(self.fs * self.frame_seconds)

    @property
    def frames_per_patient(self) -> int:
        return math.ceil(self.duration_s / self.frame_seconds - 1e-9)

    def validate(self) -> None:
        if self.patients < 1:
            raise ValueError("patients must be >= 1")
        if not 1 <= self.fs <= 2000:
            raise ValueError("fs must be in 1..2000 Hz (contract)")
        if self.frame_ms < 1 or abs(self.frame_seconds * 1000 - self.frame_ms) > 1e-6:
            raise ValueError("frame_seconds must be a whole number of milliseconds")
        exact = self.fs * self.frame_seconds
        if abs(exact - round(exact)) > 1e-6:
            raise ValueError(f"fs * frame_seconds = {exact} must be a whole number of samples")
        if not 1 <= self.samples_per_frame <= MAX_SAMPLES:
            raise ValueError(f"samples per frame {self.samples_per_frame} not in 1..{MAX_SAMPLES} (contract)")
        if self.duration_s <= 0:
            raise ValueError("duration must be > 0")
        if not 0.0 <= self.bad_fraction <= 1.0 or not 0.0 <= self.hr_fraction <= 1.0:
            raise ValueError("bad_fraction and hr_fraction must be in 0..1")
        if self.sites < 1 or self.partitions < 1 or self.window_seconds < 1:
            raise ValueError("sites, partitions and window_seconds must be >= 1")


@dataclass(frozen=True, slots=True)
class SimMessage:
    key: bytes | None
    value: bytes
    timestamp_ms: int
    partition: int | None  # set only for control messages (one per partition)
    valid: bool  # a data frame that parse_frame accepts
    patient_id: str | None
    patient_name: str | None
    kind: str = KIND_FRAME  # frame | bad | control
    expected_reason: str | None = None  # for bad messages: the corpus entry's reason


@dataclass(frozen=True, slots=True)
class Patient:
    device_id: str
    patient_id: str
    patient_name: str
    age: int
    sex: str
    zip: str
    site: str
    reports_hr: bool
    signal_index: int  # which base signal (record 208, or one of the synthetic pool)
    offset: float  # start position in the base signal, in base samples
    amplitude: float
    baseline_mv: float
    first_frame: int = 0  # frames [first_frame, last_frame) are sent (churn)
    last_frame: int | None = None  # None: until the end

    def present(self, frame_index: int) -> bool:
        return self.first_frame <= frame_index and (self.last_frame is None or frame_index < self.last_frame)


@dataclass
class ProduceReport:
    valid: int = 0
    bad: int = 0
    control: int = 0
    errors: int = 0
    bytes: int = 0
    seconds: float = 0.0
    first_ts_ms: int | None = None
    last_data_ts_ms: int | None = None
    error_samples: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.valid + self.bad + self.control

    def summary(self) -> str:
        rate = self.sent / self.seconds if self.seconds > 0 else float("inf")
        return (
            f"sent {self.sent} messages ({self.valid} valid, {self.bad} bad, {self.control} control), "
            f"{self.bytes / 1e6:.2f} MB in {self.seconds:.1f} s ({rate:.0f} msg/s), {self.errors} errors; "
            f"data ts {self.first_ts_ms}..{self.last_data_ts_ms}"
        )


def default_start_ms(window_seconds: int, now_ms: int | None = None) -> int:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    window_ms = window_seconds * 1000
    return now - now % window_ms


def make_patients(cfg: SimConfig, signal_count: int, signal_length: int) -> list[Patient]:
    rng = np.random.default_rng([cfg.seed, _STREAM_PATIENTS])
    wards = [int(w) for w in rng.integers(0, cfg.sites, cfg.patients)]
    population = draw_population(rng, wards, cfg.sites, cfg.churn, np.random.default_rng([cfg.seed, _STREAM_CHURN]))
    used_mrns: set[int] = set()
    patients = []
    width = max(4, len(str(cfg.patients)))
    for number, person in enumerate(population, start=1):
        mrn = int(rng.integers(1, 10_000_000))
        while mrn in used_mrns:
            mrn = int(rng.integers(1, 10_000_000))
        used_mrns.add(mrn)
        first, last = person.stay.frames(cfg.frames_per_patient)
        patients.append(
            Patient(
                device_id=f"dev-{number:0{width}d}",
                patient_id=f"MRN-{mrn:07d}",
                patient_name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                age=person.age,
                sex=person.sex,
                zip=person.zip,
                site=f"ward-{person.ward + 1}",
                reports_hr=bool(rng.random() < cfg.hr_fraction),
                signal_index=int(rng.integers(signal_count)),
                offset=float(rng.integers(signal_length)),
                amplitude=float(rng.uniform(0.7, 1.3)),
                baseline_mv=float(np.clip(rng.normal(0.0, 0.1), -0.3, 0.3)),
                first_frame=first,
                last_frame=last,
            )
        )
    return patients


def detect_r_peaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of R peaks: a small Pan-Tompkins-style detector (slope energy, moving
    integration, threshold relative to the local maximum over 2.5 s so large ectopic beats do not
    mask normal ones, 250 ms refractory period). Good enough for a per-frame heart rate."""
    slope = np.diff(signal, prepend=signal[0])
    window = max(1, int(0.12 * fs))
    energy = np.convolve(slope * slope, np.ones(window) / window, mode="same")
    local_window = max(1, int(2.5 * fs))
    padded = np.pad(energy, (local_window // 2, local_window - local_window // 2 - 1), mode="edge")
    local_max = sliding_window_view(padded, local_window).max(axis=1)
    threshold = np.maximum(0.2 * local_max, 0.05 * float(np.percentile(energy, 99.5)))
    above = np.concatenate(([False], energy > threshold, [False]))
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    baseline_window = max(1, int(0.6 * fs))
    baseline = np.convolve(signal, np.ones(baseline_window) / baseline_window, mode="same")
    peaks: list[int] = []
    refractory = int(0.25 * fs)
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        peak = int(start) + int(np.argmax(np.abs(signal[start:end] - baseline[start:end])))
        if peaks and peak - peaks[-1] < refractory:
            continue
        peaks.append(peak)
    return np.array(peaks, dtype=np.int64)


@dataclass(frozen=True)
class _BaseSignal:
    samples: np.ndarray
    fs: float
    r_peaks: np.ndarray  # indices, repeated one length before and after for wrap-around lookups
    mean_hr: float  # over the whole signal

    @classmethod
    def build(cls, samples: np.ndarray, fs: float) -> _BaseSignal:
        peaks = detect_r_peaks(samples, fs)
        n = samples.size
        mean_hr = 60.0 * fs / float(np.mean(np.diff(peaks)))
        return cls(samples=samples, fs=fs, r_peaks=np.concatenate((peaks - n, peaks, peaks + n)), mean_hr=mean_hr)

    def window(self, start: float, count: int, step: float) -> np.ndarray:
        """`count` samples from position `start` every `step` base samples, looping the record."""
        n = self.samples.size
        positions = np.mod(start + step * np.arange(count), n)
        # np.interp with the first sample appended once more, so positions in [n-1, n) wrap smoothly.
        return np.interp(positions, np.arange(n + 1), np.append(self.samples, self.samples[0]))

    def heart_rate(self, end: float, seconds: float = 5.0) -> float | None:
        """Mean heart rate over the `seconds` of signal before base position `end`."""
        n = self.samples.size
        end = end % n
        low, high = np.searchsorted(self.r_peaks, [end - seconds * self.fs, end])
        peaks = self.r_peaks[low:high]
        if peaks.size < 2:
            return None
        bpm = 60.0 * self.fs / float(np.mean(np.diff(peaks)))
        return round(bpm, 1) if 10.0 <= bpm <= 350.0 else None


def _base_signals(cfg: SimConfig) -> list[_BaseSignal]:
    if not cfg.synthetic:
        return [_BaseSignal.build(load_mitbih_208(cfg.ecg_path), float(MITBIH_FS_HZ))]
    # A small pool of 5-minute synthetic records at different heart rates, shared by patients,
    # so memory does not grow with the number of patients.
    rng = np.random.default_rng([cfg.seed, _STREAM_SIGNAL])
    return [
        _BaseSignal.build(synthetic_ecg(300.0, cfg.fs, float(hr), rng), cfg.fs)
        for hr in (58, 66, 72, 80, 88, 96, 110, 125)
    ]


def _frame_value(cfg: SimConfig, patient: Patient, ts_ms: int, samples: np.ndarray, hr_bpm: float | None) -> bytes:
    frame: dict[str, Any] = {
        "device_id": patient.device_id,
        "patient_id": patient.patient_id,
        "patient_name": patient.patient_name,
        "ts": ts_ms,
        "fs": int(cfg.fs) if float(cfg.fs).is_integer() else cfg.fs,
        "lead": "II",  # record 208 is MLII, the modified limb lead II
        "samples": np.round(samples, SAMPLE_DECIMALS).tolist(),
    }
    if hr_bpm is not None:
        frame["hr_bpm"] = hr_bpm
    frame.update(age=patient.age, sex=patient.sex, zip=patient.zip, site=patient.site)
    return json.dumps(frame, separators=(",", ":")).encode("utf-8")


def _bad_slots(cfg: SimConfig, data_messages: int) -> tuple[np.ndarray, np.random.Generator]:
    rng = np.random.default_rng([cfg.seed, _STREAM_BAD])
    count = round(cfg.bad_fraction * data_messages)
    slots = np.sort(rng.choice(data_messages, size=count, replace=False)) if count else np.empty(0, np.int64)
    return slots, rng


@lru_cache(maxsize=4)
def _corpus_at(ts_ms: int) -> tuple[BadInput, ...]:
    return tuple(injectable_bad_inputs(ts_ms))


def end_of_stream_messages(partitions: int, ts_ms: int = END_OF_STREAM_TS_MS) -> list[SimMessage]:
    value = json.dumps({"control": CONTROL_END_OF_STREAM, "ts": ts_ms}, separators=(",", ":")).encode()
    return [
        SimMessage(
            key=None,
            value=value,
            timestamp_ms=ts_ms,
            partition=partition,
            valid=False,
            patient_id=None,
            patient_name=None,
            kind=KIND_CONTROL,
        )
        for partition in range(partitions)
    ]


MIN_REPORTED_BPM, MAX_REPORTED_BPM = 10.0, 350.0


def _episode_rate(kind: str | None, base_hr: float) -> float:
    """How fast the base signal plays during an episode (1 = normal, 0 = stopped)."""
    if kind in EPISODE_TARGET_BPM:
        return EPISODE_TARGET_BPM[kind] / base_hr
    return 0.0 if kind == "asystole" else 1.0


def _episode_at(episodes: Iterable[Episode], offset_ms: int) -> str | None:
    for episode in episodes:
        if episode.start_s * 1000 <= offset_ms < (episode.start_s + episode.duration_s) * 1000:
            return episode.kind
    return None


RATE_EPISODE_KINDS = ("tachycardia", "bradycardia")


def random_rate_episodes(devices: int, seconds: int, seed: int, start_ms: int) -> SimConfig:
    """The detection scenario of benchmarks/anomaly_evaluation.py: every device one tachycardia or
    bradycardia episode (kinds alternating), length uniform in 10..60 s, start uniform in
    [30 s, end - length - 10 s], so episodes fall anywhere relative to 30 s windows; MIT-BIH record 208,
    no hr_bpm in the frames."""
    rng = np.random.default_rng(seed)
    episodes = []
    for number in range(1, devices + 1):
        length = float(round(rng.uniform(10, 60), 1))
        start = float(round(rng.uniform(30, seconds - length - 10), 1))
        episodes.append(Episode(f"dev-{number:04d}", RATE_EPISODE_KINDS[number % 2], start, length))
    return SimConfig(patients=devices, duration_s=seconds, start_ms=start_ms, seed=seed, synthetic=False,
                     hr_fraction=0.0, episodes=tuple(episodes))


def ground_truth(cfg: SimConfig) -> list[dict[str, Any]]:
    """The labelled episodes of a run in event time (raw device and patient ids: test data only;
    the evaluation pseudonymizes the patient id with the job's secret and scope (the site) to match
    `pid`)."""
    start_ms = default_start_ms(cfg.window_seconds) if cfg.start_ms is None else cfg.start_ms
    bases = _base_signals(cfg)
    patients = {p.device_id: p for p in make_patients(cfg, len(bases), min(b.samples.size for b in bases))}
    truth = []
    for episode in cfg.episodes:
        patient = patients.get(episode.device_id)
        if patient is None:
            raise ValueError(f"episode for unknown device {episode.device_id}")
        begin = start_ms + round(episode.start_s * 1000)
        truth.append({
            "device_id": episode.device_id, "patient_id": patient.patient_id, "site": patient.site,
            "kind": episode.kind,
            "start_ms": begin, "end_ms": begin + round(episode.duration_s * 1000),
        })
    return truth


def generate_messages(cfg: SimConfig) -> Iterator[SimMessage]:
    """All messages of a run, in time order: frame by frame, one message per patient, then the
    end-of-stream controls. Lazy, so long runs do not hold the stream in memory."""
    cfg.validate()
    start_ms = default_start_ms(cfg.window_seconds) if cfg.start_ms is None else cfg.start_ms
    bases = _base_signals(cfg)
    patients = make_patients(cfg, len(bases), min(base.samples.size for base in bases))
    per_frame = cfg.samples_per_frame
    frames = cfg.frames_per_patient
    bad_slots, bad_rng = _bad_slots(cfg, sum(p.present(i) for i in range(frames) for p in patients))
    next_bad = 0
    joins = {device_id: start_ms + round(seconds * 1000) for device_id, seconds in cfg.joins}
    episodes: dict[str, list[Episode]] = {}
    for episode in cfg.episodes:
        episodes.setdefault(episode.device_id, []).append(episode)
    extra = [0.0] * len(patients)  # frames of signal gained (tachycardia) or lost (bradycardia, asystole)
    slot = -1  # index among the data messages actually sent
    for frame_index in range(frames):
        ts_ms = start_ms + frame_index * cfg.frame_ms
        for patient_index, patient in enumerate(patients):
            if not patient.present(frame_index):
                continue
            slot += 1
            key = patient.device_id.encode("utf-8")
            bad = next_bad < bad_slots.size and bad_slots[next_bad] == slot
            next_bad += int(bad)
            if ts_ms < joins.get(patient.device_id, ts_ms):
                continue  # the device has not joined yet (a bad message in its slot is dropped too)
            if bad:
                corpus = _corpus_at(ts_ms)
                entry = corpus[int(bad_rng.integers(len(corpus)))]
                yield SimMessage(key, entry.value, ts_ms, None, False, None, None, KIND_BAD, entry.expected_reason)
                continue
            base = bases[patient.signal_index]
            step = base.fs / cfg.fs
            start = patient.offset + (frame_index + extra[patient_index]) * per_frame * step
            kind = _episode_at(episodes.get(patient.device_id, ()), ts_ms - start_ms)
            rate = _episode_rate(kind, base.mean_hr)
            extra[patient_index] += rate - 1.0
            samples = base.window(start, per_frame, step * rate) * patient.amplitude + patient.baseline_mv
            hr_bpm = base.heart_rate(start + per_frame * step * rate) if patient.reports_hr else None
            if kind in ("asystole", "noise"):
                rng = np.random.default_rng([cfg.seed, _STREAM_EPISODE, patient_index, frame_index])
                if kind == "asystole":
                    samples = patient.baseline_mv + rng.normal(0.0, FLAT_NOISE_MV, per_frame)
                else:
                    samples = samples + rng.normal(0.0, NOISE_BURST_MV, per_frame)
                hr_bpm = None
            elif hr_bpm is not None and rate != 1.0:
                hr_bpm = round(hr_bpm * rate, 1) if MIN_REPORTED_BPM <= hr_bpm * rate <= MAX_REPORTED_BPM else None
            value = _frame_value(cfg, patient, ts_ms, samples, hr_bpm)
            yield SimMessage(key, value, ts_ms, None, True, patient.patient_id, patient.patient_name)
    if cfg.end_of_stream:
        yield from end_of_stream_messages(cfg.partitions, cfg.end_of_stream_ts_ms)


def make_producer(bootstrap: str, security: KafkaSecurity | None = None, **overrides: Any) -> Any:
    """kafka-python producer; ``security``: the client security settings (None: PLAINTEXT)."""
    from kafka import KafkaProducer  # imported here so generate_messages works without a broker

    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        # A device rides out a broker outage of a few minutes: unbounded retries within the delivery timeout,
        # the frames buffered meanwhile (~2.5 KB per frame and second); idempotent, so a retry neither reorders
        # nor doubles a frame (tests/integration/test_broker_outage.py, kill -9 for 30 s and 120 s during a
        # live stream). 300 s, not the client's 120 s: with 120 s a 2 min outage (~130 s until the restarted
        # broker answers) expired the frames sent at its start, and kafka-python then dropped its producer id
        # and sent nothing more, even after the broker was back (benchmarks/producer_outage.py).
        "retries": 2**31 - 1,
        "delivery_timeout_ms": 300_000,
        "enable_idempotence": True,
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        # Room for the largest contract-valid message (1 MiB) plus record overhead; brokers with
        # the default message.max.bytes (~1 MB) still reject anything bigger, which we count.
        "max_request_size": MAX_MESSAGE_BYTES + 64 * 1024,
        "client_id": "ecg-simulator",
        **(security.kafka_python_config() if security else {}),
    }
    config.update(overrides)
    return KafkaProducer(**config)


def topic_partitions(producer: Any, topic: str, timeout_s: float = 30.0) -> int:
    """Number of partitions of `topic` (metadata may need a moment after auto-creation)."""
    deadline = time.monotonic() + timeout_s
    while True:
        partitions = producer.partitions_for(topic)
        if partitions:
            return len(partitions)
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic!r}: no partition metadata after {timeout_s} s")
        time.sleep(0.5)


def produce(
    messages: Iterable[SimMessage],
    bootstrap: str,
    topic: str = DEFAULT_TOPIC,
    rate: float = 0.0,
    *,
    realtime_frame_ms: int | None = None,
    producer: Any = None,
    flush_timeout_s: float = 330.0,
) -> ProduceReport:
    """Send messages with acks=all; `rate` limits messages per second (0 = unlimited);
    `realtime_frame_ms` holds each data frame until its last sample's wall-clock time. The final flush waits
    past the producer's delivery timeout (300 s), so every frame ends delivered or counted in `errors`."""
    from kafka.errors import KafkaError

    own_producer = producer is None
    if producer is None:
        producer = make_producer(bootstrap)
    report = ProduceReport()

    def on_error(error: Exception) -> None:
        report.errors += 1
        if len(report.error_samples) < 5:
            report.error_samples.append(repr(error))

    started = time.monotonic()
    try:
        for index, message in enumerate(messages):
            if rate > 0:
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if realtime_frame_ms is not None and message.kind != KIND_CONTROL:
                delay = (message.timestamp_ms + realtime_frame_ms) / 1000 - time.time()
                if delay > 0:
                    time.sleep(delay)
            try:
                future = producer.send(
                    topic,
                    value=message.value,
                    key=message.key,
                    partition=message.partition,
                    timestamp_ms=message.timestamp_ms,
                )
                future.add_errback(on_error)
            except KafkaError as error:  # e.g. MessageSizeTooLargeError, raised synchronously
                on_error(error)
                continue
            report.bytes += len(message.value)
            if message.kind == KIND_CONTROL:
                report.control += 1
            else:
                if message.kind == KIND_BAD:
                    report.bad += 1
                else:
                    report.valid += 1
                if report.first_ts_ms is None:
                    report.first_ts_ms = message.timestamp_ms
                report.last_data_ts_ms = message.timestamp_ms
        producer.flush(timeout=flush_timeout_s)
    finally:
        if own_producer:
            producer.close(timeout=10)
    report.seconds = time.monotonic() - started
    return report


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP))
    parser.add_argument("--topic", default=os.environ.get("KAFKA_INPUT_TOPIC", DEFAULT_TOPIC))
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of signal per patient")
    parser.add_argument("--frame-seconds", type=float, default=1.0)
    parser.add_argument("--fs", type=float, default=float(MITBIH_FS_HZ), help="sampling rate (resampled)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0, help="messages per second, 0 = as fast as possible")
    parser.add_argument(
        "--start-ms", type=int, default=None, help="ts of the first frame (default: now, window-aligned)"
    )
    parser.add_argument("--window-seconds", type=int, default=_env_int("WINDOW_SECONDS", DEFAULT_WINDOW_SECONDS))
    parser.add_argument("--sites", type=int, default=4, help="wards ward-1..ward-N")
    parser.add_argument("--synthetic", action="store_true", help="synthetic ECG instead of MIT-BIH record 208")
    parser.add_argument("--hr-fraction", type=float, default=0.5, help="fraction of devices sending hr_bpm")
    parser.add_argument("--bad-fraction", type=float, default=0.0, help="fraction of data messages that are malformed")
    parser.add_argument(
        "--churn", action="store_true", help="patients join and leave (each present 40-100 %% of the run)"
    )
    parser.add_argument(
        "--end-of-stream", action="store_true", help="finish with a far-future control message per partition"
    )
    parser.add_argument(
        "--partitions", type=int, default=None, help="partitions for end-of-stream (default: ask the broker)"
    )
    parser.add_argument("--end-of-stream-ts-ms", type=int, default=END_OF_STREAM_TS_MS)
    parser.add_argument(
        "--realtime", action="store_true", help="ts follows the wall clock; frames sent as they complete"
    )
    parser.add_argument(
        "--ecg-path", type=Path, default=None, help="ecg.dat (default: .cache/data, fetched if missing)"
    )
    parser.add_argument("--episode", action="append", default=[], type=Episode.parse, metavar="DEV:KIND:START:SECONDS",
                        help=f"labelled episode, KIND one of {', '.join(EPISODE_KINDS)} (repeatable)")
    parser.add_argument("--join", action="append", default=[], metavar="DEV:SECONDS",
                        help="device sends only from this many seconds after the start (repeatable)")
    parser.add_argument("--ground-truth", type=Path, default=None, help="write the episodes as JSON here")
    parser.add_argument("--dry-run", action="store_true", help="generate and count, send nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    from dotenv import load_dotenv

    load_dotenv()  # before the parser reads its defaults from the environment
    args = build_parser().parse_args(argv)
    start_ms = args.start_ms
    if args.realtime and start_ms is None:
        start_ms = int(time.time() * 1000)  # the first frame completes one frame from now
    cfg = SimConfig(
        patients=args.patients,
        duration_s=args.duration,
        frame_seconds=args.frame_seconds,
        fs=args.fs,
        seed=args.seed,
        start_ms=default_start_ms(args.window_seconds) if start_ms is None else start_ms,
        window_seconds=args.window_seconds,
        sites=args.sites,
        synthetic=args.synthetic,
        hr_fraction=args.hr_fraction,
        bad_fraction=args.bad_fraction,
        churn=args.churn,
        end_of_stream=args.end_of_stream,
        partitions=args.partitions or 1,
        end_of_stream_ts_ms=args.end_of_stream_ts_ms,
        ecg_path=args.ecg_path,
        episodes=tuple(args.episode),
        joins=tuple((text.rsplit(":", 1)[0], float(text.rsplit(":", 1)[1])) for text in args.join),
    )
    try:
        cfg.validate()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if args.ground_truth is not None:
        args.ground_truth.write_text(json.dumps(ground_truth(cfg), indent=1) + "\n")
        print(f"ground truth: {len(cfg.episodes)} episodes in {args.ground_truth}")
    if args.dry_run:
        counts = {KIND_FRAME: 0, KIND_BAD: 0, KIND_CONTROL: 0}
        for message in generate_messages(cfg):
            counts[message.kind] += 1
        print(f"dry run: {counts[KIND_FRAME]} valid, {counts[KIND_BAD]} bad, {counts[KIND_CONTROL]} control")
        return 0

    try:
        # The device side of a secured broker: KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_* (as for the job).
        security = KafkaSecurity.from_environ()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    producer = make_producer(args.bootstrap, security)
    try:
        if cfg.end_of_stream and args.partitions is None:
            cfg = dataclasses.replace(cfg, partitions=topic_partitions(producer, args.topic))
        report = produce(
            generate_messages(cfg),
            args.bootstrap,
            args.topic,
            args.rate,
            realtime_frame_ms=cfg.frame_ms if args.realtime else None,
            producer=producer,
        )
    finally:
        producer.close(timeout=10)
    print(
        f"{args.topic} @ {args.bootstrap}: {cfg.patients} patients, {cfg.duration_s:g} s at {cfg.fs:g} Hz, "
        f"{'synthetic' if cfg.synthetic else 'MIT-BIH 208'}, seed {cfg.seed}, "
        f"end-of-stream to {cfg.partitions if cfg.end_of_stream else 0} partitions"
    )
    print(report.summary())
    for sample in report.error_samples:
        print(f"  error: {sample}", file=sys.stderr)
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
