"""ECG device simulator: virtual patients streaming frames to the `ecg-raw` topic.

Each patient has quasi-identifiers drawn from a plausible hospital population and a waveform cut
from MIT-BIH record 208 (per-patient offset, amplitude and baseline) or a synthetic ECG. One message
per device per frame, Kafka key = device_id, record timestamp = frame ts. Everything is
deterministic for a given `--seed`.

    python -m connectors.simulator --patients 20 --duration 60 --bad-fraction 0.02 --end-of-stream
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

from connectors.ecg_data import MITBIH_FS_HZ, load_mitbih_208, synthetic_ecg
from contract.bad_input_corpus import BadInput, injectable_bad_inputs
from contract.frames import CONTROL_END_OF_STREAM, MAX_MESSAGE_BYTES, MAX_SAMPLES

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

# Population model (a general hospital: mostly middle-aged and old patients).
AGE_BANDS = ((0, 17, 0.07), (18, 39, 0.18), (40, 64, 0.35), (65, 79, 0.25), (80, 100, 0.15))
SEX_WEIGHTS = (("F", 0.49), ("M", 0.49), ("U", 0.02))
# Three-digit city prefixes with weights; each city uses a few two-digit suffixes, so zips repeat
# and generalizing by digit truncation (10115 -> 1011* -> 101**) merges realistic groups.
ZIP_CITIES = (("101", 0.30), ("104", 0.20), ("120", 0.20), ("133", 0.15), ("140", 0.15))
ZIP_SUFFIXES_PER_CITY = 6
FIRST_NAMES = (
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannes", "Ida", "Jonas", "Karla",
    "Leon", "Mia", "Noah", "Olga", "Paul", "Quinn", "Rosa", "Samir", "Tina", "Umut", "Vera", "Wim", "Yara",
)  # fmt: skip
LAST_NAMES = (
    "Adler", "Becker", "Cohen", "Demir", "Engel", "Fischer", "Garcia", "Hoffmann", "Ivanova", "Jansen",
    "Kowalski", "Lange", "Meyer", "Nguyen", "Otto", "Peters", "Richter", "Schulz", "Weber", "Zimmermann",
)  # fmt: skip

# Streams of randomness, separate so that e.g. changing --bad-fraction keeps patients and signals.
_STREAM_PATIENTS, _STREAM_SIGNAL, _STREAM_BAD = 1, 2, 3


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
    ecg_path: Path | None = None  # default: connectors.ecg_data.ensure_ecg_dat()

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
    band_weights = np.array([weight for _, _, weight in AGE_BANDS])
    city_weights = np.array([weight for _, weight in ZIP_CITIES])
    sex_weights = np.array([weight for _, weight in SEX_WEIGHTS])
    # Each city uses a fixed handful of suffixes (00..39), drawn once.
    city_suffixes = [np.sort(rng.choice(40, ZIP_SUFFIXES_PER_CITY, replace=False)) for _ in ZIP_CITIES]
    used_mrns: set[int] = set()
    patients = []
    width = max(4, len(str(cfg.patients)))
    for number in range(1, cfg.patients + 1):
        low, high, _ = AGE_BANDS[rng.choice(len(AGE_BANDS), p=band_weights / band_weights.sum())]
        city = int(rng.choice(len(ZIP_CITIES), p=city_weights / city_weights.sum()))
        suffix = int(rng.choice(city_suffixes[city]))
        mrn = int(rng.integers(1, 10_000_000))
        while mrn in used_mrns:
            mrn = int(rng.integers(1, 10_000_000))
        used_mrns.add(mrn)
        patients.append(
            Patient(
                device_id=f"dev-{number:0{width}d}",
                patient_id=f"MRN-{mrn:07d}",
                patient_name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                age=int(rng.integers(low, high + 1)),
                sex=SEX_WEIGHTS[int(rng.choice(len(SEX_WEIGHTS), p=sex_weights / sex_weights.sum()))][0],
                zip=f"{ZIP_CITIES[city][0]}{suffix:02d}",
                site=f"ward-{int(rng.integers(1, cfg.sites + 1))}",
                reports_hr=bool(rng.random() < cfg.hr_fraction),
                signal_index=int(rng.integers(signal_count)),
                offset=float(rng.integers(signal_length)),
                amplitude=float(rng.uniform(0.7, 1.3)),
                baseline_mv=float(np.clip(rng.normal(0.0, 0.1), -0.3, 0.3)),
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

    @classmethod
    def build(cls, samples: np.ndarray, fs: float) -> _BaseSignal:
        peaks = detect_r_peaks(samples, fs)
        n = samples.size
        return cls(samples=samples, fs=fs, r_peaks=np.concatenate((peaks - n, peaks, peaks + n)))

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


def generate_messages(cfg: SimConfig) -> Iterator[SimMessage]:
    """All messages of a run, in time order: frame by frame, one message per patient, then the
    end-of-stream controls. Lazy, so long runs do not hold the stream in memory."""
    cfg.validate()
    start_ms = default_start_ms(cfg.window_seconds) if cfg.start_ms is None else cfg.start_ms
    bases = _base_signals(cfg)
    patients = make_patients(cfg, len(bases), min(base.samples.size for base in bases))
    per_frame = cfg.samples_per_frame
    frames = cfg.frames_per_patient
    bad_slots, bad_rng = _bad_slots(cfg, frames * len(patients))
    next_bad = 0
    for frame_index in range(frames):
        ts_ms = start_ms + frame_index * cfg.frame_ms
        for patient_index, patient in enumerate(patients):
            slot = frame_index * len(patients) + patient_index
            key = patient.device_id.encode("utf-8")
            if next_bad < bad_slots.size and bad_slots[next_bad] == slot:
                next_bad += 1
                corpus = _corpus_at(ts_ms)
                entry = corpus[int(bad_rng.integers(len(corpus)))]
                yield SimMessage(key, entry.value, ts_ms, None, False, None, None, KIND_BAD, entry.expected_reason)
                continue
            base = bases[patient.signal_index]
            step = base.fs / cfg.fs
            start = patient.offset + frame_index * per_frame * step
            samples = base.window(start, per_frame, step) * patient.amplitude + patient.baseline_mv
            hr_bpm = base.heart_rate(start + per_frame * step) if patient.reports_hr else None
            value = _frame_value(cfg, patient, ts_ms, samples, hr_bpm)
            yield SimMessage(key, value, ts_ms, None, True, patient.patient_id, patient.patient_name)
    if cfg.end_of_stream:
        yield from end_of_stream_messages(cfg.partitions, cfg.end_of_stream_ts_ms)


def make_producer(bootstrap: str, **overrides: Any) -> Any:
    from kafka import KafkaProducer  # imported here so generate_messages works without a broker

    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        # Room for the largest contract-valid message (1 MiB) plus record overhead; brokers with
        # the default message.max.bytes (~1 MB) still reject anything bigger, which we count.
        "max_request_size": MAX_MESSAGE_BYTES + 64 * 1024,
        "client_id": "ecg-simulator",
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
    flush_timeout_s: float = 120.0,
) -> ProduceReport:
    """Send messages with acks=all; `rate` limits messages per second (0 = unlimited);
    `realtime_frame_ms` holds each data frame until its last sample's wall-clock time."""
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
        end_of_stream=args.end_of_stream,
        partitions=args.partitions or 1,
        end_of_stream_ts_ms=args.end_of_stream_ts_ms,
        ecg_path=args.ecg_path,
    )
    try:
        cfg.validate()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if args.dry_run:
        counts = {KIND_FRAME: 0, KIND_BAD: 0, KIND_CONTROL: 0}
        for message in generate_messages(cfg):
            counts[message.kind] += 1
        print(f"dry run: {counts[KIND_FRAME]} valid, {counts[KIND_BAD]} bad, {counts[KIND_CONTROL]} control")
        return 0

    producer = make_producer(args.bootstrap)
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
