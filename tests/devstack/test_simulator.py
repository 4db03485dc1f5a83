"""Simulator: determinism, contract validity, exact bad fraction, end-of-stream, population."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contract.frames import Control, EcgFrame, Rejection, parse_frame
from devstack.ecg_data import ensure_ecg_dat, load_mitbih_208
from devstack.simulator import (
    END_OF_STREAM_TS_MS,
    SimConfig,
    SimMessage,
    default_start_ms,
    generate_messages,
    main,
    make_patients,
    produce,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
START_MS = 1_763_812_800_000


@pytest.fixture(scope="module")
def ecg_path() -> Path:
    return ensure_ecg_dat(REPO_ROOT / ".cache" / "data")


@pytest.fixture
def config(ecg_path: Path) -> SimConfig:
    return SimConfig(patients=12, duration_s=10, seed=7, start_ms=START_MS, ecg_path=ecg_path)


def parsed_frames(messages: list[SimMessage]) -> list[EcgFrame]:
    results = [parse_frame(m.value, m.timestamp_ms) for m in messages if m.kind == "frame"]
    assert all(isinstance(r, EcgFrame) for r in results)
    return [r for r in results if isinstance(r, EcgFrame)]


def test_deterministic_for_a_seed(config: SimConfig) -> None:
    first = list(generate_messages(config))
    assert first == list(generate_messages(config))
    other = list(generate_messages(dataclasses.replace(config, seed=8)))
    assert [m.value for m in first] != [m.value for m in other]


def test_bad_fraction_keeps_patients_and_signals(config: SimConfig) -> None:
    clean = {(m.key, m.timestamp_ms): m.value for m in generate_messages(config)}
    noisy = list(generate_messages(dataclasses.replace(config, bad_fraction=0.1)))
    for message in noisy:
        if message.kind == "frame":
            assert clean[(message.key, message.timestamp_ms)] == message.value


def test_valid_messages_follow_the_contract(config: SimConfig) -> None:
    messages = list(generate_messages(config))
    assert len(messages) == 12 * 10 and all(m.valid and m.kind == "frame" for m in messages)
    frames = parsed_frames(messages)
    for message, frame in zip(messages, frames, strict=True):
        assert message.key == frame.device_id.encode()
        assert message.timestamp_ms == frame.ts_ms  # record timestamp = event time
        assert message.partition is None  # the key decides the partition
        assert (message.patient_id, message.patient_name) == (frame.patient_id, frame.patient_name)
        assert frame.fs == 360.0 and frame.samples.size == 360 and frame.lead == "II"
        assert -6.0 < frame.samples.min() and frame.samples.max() < 6.0  # mV
    # One frame per device per second, contiguous.
    per_device = Counter(f.device_id for f in frames)
    assert len(per_device) == 12 and set(per_device.values()) == {10}
    assert sorted({f.ts_ms for f in frames}) == [START_MS + 1000 * i for i in range(10)]


def test_signal_is_a_scaled_continuous_slice_of_record_208(config: SimConfig, ecg_path: Path) -> None:
    frames = [f for f in parsed_frames(list(generate_messages(config))) if f.device_id == "dev-0001"]
    signal = np.concatenate([f.samples for f in sorted(frames, key=lambda f: f.ts_ms)])
    assert signal.size == 3600
    patient = make_patients(config, 1, 108_000)[0]
    record = load_mitbih_208(ecg_path)
    expected = record[(int(patient.offset) + np.arange(3600)) % record.size] * patient.amplitude + patient.baseline_mv
    np.testing.assert_allclose(signal, expected, atol=0.0006)  # samples are rounded to 1 µV


def test_quasi_identifiers_are_plausible(ecg_path: Path) -> None:
    cfg = SimConfig(patients=300, duration_s=1, seed=3, start_ms=START_MS, ecg_path=ecg_path, sites=5)
    frames = parsed_frames(list(generate_messages(cfg)))
    assert len({f.patient_id for f in frames}) == 300
    assert all(f.patient_id.startswith("MRN-") and len(f.patient_id) == 11 for f in frames)
    assert [f.device_id for f in frames[:3]] == ["dev-0001", "dev-0002", "dev-0003"]
    ages = np.array([f.age for f in frames])
    assert ages.min() >= 0 and ages.max() <= 104 and 60 <= np.median(ages) <= 78  # hospital: old patients
    assert np.mean(ages < 18) < 0.1 and np.mean(ages >= 80) > 0.15
    sexes = Counter(f.sex for f in frames)
    assert set(sexes) <= {"F", "M", "U"} and sexes["F"] > 100 and sexes["M"] > 100
    zips = Counter(f.zip for f in frames)
    assert all(len(z) == 5 and z.isdigit() for z in zips)
    prefixes = Counter(z[:3] for z in (f.zip for f in frames))
    top = sum(c for _, c in prefixes.most_common(8))
    assert top >= 0.7 * 300 and len(prefixes) >= 20  # a few dominant prefixes and a long tail
    assert max(zips.values()) >= 10  # equivalence classes large enough for k-anonymity to bite
    assert {f.group for f in frames} == {f"ward-{i}" for i in range(1, 6)}
    female = {w: np.mean([f.sex == "F" for f in frames if f.group == w]) for w in (f"ward-{i}" for i in range(1, 6))}
    assert female["ward-2"] < 0.45 < 0.55 < female["ward-4"] and female["ward-5"] > 0.9  # ratios per ward
    with_hr = [f.hr_bpm for f in frames if f.hr_bpm is not None]
    assert 0.3 < len(with_hr) / len(frames) < 0.7  # default hr_fraction 0.5
    assert all(20 <= hr <= 200 for hr in with_hr)


def test_churn_patients_come_and_go(ecg_path: Path) -> None:
    cfg = SimConfig(patients=60, duration_s=40, seed=5, start_ms=START_MS, ecg_path=ecg_path, sites=3, churn=True)
    messages = list(generate_messages(cfg))
    assert messages == list(generate_messages(cfg))  # still deterministic
    frames = parsed_frames(messages)
    spans: dict[str, list[int]] = {}
    for f in frames:
        spans.setdefault(f.device_id, []).append(f.ts_ms)
    assert len(spans) == 60
    for ts in spans.values():  # one contiguous stay per patient
        assert sorted(ts) == list(range(min(ts), max(ts) + 1000, 1000))
    lengths = sorted(len(ts) for ts in spans.values())
    assert lengths[0] < 40 and lengths[-1] <= 40 and sum(n < 40 for n in lengths) > 40
    assert sum(min(ts) > START_MS for ts in spans.values()) > 20  # joining later
    assert sum(max(ts) < START_MS + 39_000 for ts in spans.values()) > 20  # leaving early
    no_churn = parsed_frames(list(generate_messages(dataclasses.replace(cfg, churn=False))))
    assert len(no_churn) == 60 * 40
    # Same people (QIs) with and without churn, only their presence differs.
    qis = {f.device_id: (f.age, f.sex, f.zip, f.group) for f in frames}
    assert qis == {f.device_id: (f.age, f.sex, f.zip, f.group) for f in no_churn}


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.2, 1.0])
def test_bad_fraction_is_exact(config: SimConfig, fraction: float) -> None:
    messages = list(generate_messages(dataclasses.replace(config, bad_fraction=fraction)))
    assert len(messages) == 120  # bad messages replace frames, so the count is unchanged
    bad = [m for m in messages if m.kind == "bad"]
    assert len(bad) == round(fraction * 120)
    for message in bad:
        assert not message.valid and message.patient_id is None
        result = parse_frame(message.value, message.timestamp_ms)
        assert isinstance(result, Rejection) and result.reason == message.expected_reason
    if fraction == 0.2:
        assert len({m.expected_reason for m in bad}) >= 5  # drawn from across the corpus


def test_end_of_stream_one_per_partition(config: SimConfig) -> None:
    cfg = dataclasses.replace(config, end_of_stream=True, partitions=4)
    messages = list(generate_messages(cfg))
    controls = messages[-4:]
    assert all(m.kind == "control" for m in controls)
    assert all(m.kind != "control" for m in messages[:-4])
    assert [m.partition for m in controls] == [0, 1, 2, 3]
    for message in controls:
        assert message.timestamp_ms == END_OF_STREAM_TS_MS
        assert parse_frame(message.value, message.timestamp_ms) == Control("end-of-stream", END_OF_STREAM_TS_MS)
    assert max(m.timestamp_ms for m in messages[:-4]) < END_OF_STREAM_TS_MS


def test_resampling_and_frame_length(ecg_path: Path) -> None:
    cfg = SimConfig(patients=2, duration_s=3, frame_seconds=0.5, fs=250, start_ms=START_MS, ecg_path=ecg_path)
    frames = parsed_frames(list(generate_messages(cfg)))
    assert len(frames) == 12
    assert all(f.fs == 250.0 and f.samples.size == 125 for f in frames)
    assert sorted({f.ts_ms for f in frames}) == [START_MS + 500 * i for i in range(6)]


def test_synthetic_mode(config: SimConfig) -> None:
    cfg = dataclasses.replace(config, synthetic=True, ecg_path=Path("/nonexistent"), fs=200)
    frames = parsed_frames(list(generate_messages(cfg)))
    assert len(frames) == 120 and all(f.samples.size == 200 for f in frames)


def test_invalid_configs_are_refused() -> None:
    for bad in (
        SimConfig(fs=250, frame_seconds=0.003),  # 0.75 samples per frame
        SimConfig(fs=2000, frame_seconds=3),  # 6000 samples > 4096
        SimConfig(patients=0),
        SimConfig(bad_fraction=1.5),
    ):
        with pytest.raises(ValueError):
            list(generate_messages(bad))


def test_default_start_is_window_aligned() -> None:
    assert default_start_ms(5, now_ms=1_763_812_803_456) == 1_763_812_800_000


def test_dry_run_cli(capsys: pytest.CaptureFixture[str], ecg_path: Path) -> None:
    argv = ["--dry-run", "--patients", "3", "--duration", "4", "--bad-fraction", "0.25", "--ecg-path", str(ecg_path)]
    assert main(argv) == 0
    assert "dry run: 9 valid, 3 bad, 0 control" in capsys.readouterr().out


def test_produce_to_broker(kafka_bootstrap: str, fresh_topics: Callable[..., list[str]], ecg_path: Path) -> None:
    from kafka import KafkaConsumer, TopicPartition

    (topic,) = fresh_topics("ecg-raw", partitions=3)
    cfg = SimConfig(
        patients=5, duration_s=4, start_ms=START_MS, ecg_path=ecg_path,
        bad_fraction=0.1, end_of_stream=True, partitions=3,
    )  # fmt: skip
    messages = list(generate_messages(cfg))
    report = produce(messages, kafka_bootstrap, topic)
    assert (report.valid, report.bad, report.control, report.errors) == (18, 2, 3, 0)

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        while len(records) < len(messages):
            batch = consumer.poll(timeout_ms=5000)
            if not batch:
                break
            for chunk in batch.values():
                records.extend(chunk)
    finally:
        consumer.close()
    assert len(records) == len(messages)
    controls = [r for r in records if r.key is None]
    assert sorted(r.partition for r in controls) == [0, 1, 2]
    by_key: dict[bytes, set[int]] = {}
    for record in records:
        if record.key is not None:
            by_key.setdefault(record.key, set()).add(record.partition)
            assert record.timestamp in {START_MS + 1000 * i for i in range(4)}
    assert all(len(parts) == 1 for parts in by_key.values())  # one device, one partition
    sent = Counter((m.key, m.value) for m in messages)
    assert Counter((r.key, r.value) for r in records) == sent
    assert json.loads(controls[0].value)["control"] == "end-of-stream"


def test_episodes_joins_and_ground_truth(ecg_path: Path) -> None:
    from anomaly.quality import noise_level_mv
    from devstack.simulator import Episode, ground_truth

    episodes = (Episode("dev-0001", "tachycardia", 4, 3), Episode("dev-0002", "asystole", 2, 2),
                Episode("dev-0002", "noise", 6, 2))
    plain = SimConfig(patients=3, duration_s=10, seed=7, start_ms=START_MS, ecg_path=ecg_path)
    config = dataclasses.replace(plain, episodes=episodes, joins=(("dev-0003", 5),))
    frames = {(f.device_id, f.ts_ms): f for f in parsed_frames(list(generate_messages(config)))}
    clean = {(f.device_id, f.ts_ms): f for f in parsed_frames(list(generate_messages(plain)))}
    # Device 3 sends from 5 s on; before its first episode a device sends the plain run's frames
    # (afterwards its signal continues from where the episode left it).
    assert sorted(ts for device, ts in frames if device == "dev-0003") == [START_MS + 1000 * i for i in range(5, 10)]
    first_episode = {"dev-0001": 4, "dev-0002": 2, "dev-0003": 10}
    for key, frame in frames.items():
        device, ts = key
        same = np.array_equal(frame.samples, clean[key].samples)
        assert same == ((ts - START_MS) // 1000 < first_episode[device]), key
    # Asystole is flat, noise is noisy, tachycardia plays 1.6x as much signal per frame.
    assert np.ptp(frames[("dev-0002", START_MS + 2000)].samples) < 0.05
    assert noise_level_mv(frames[("dev-0002", START_MS + 6000)].samples) > 0.3
    assert noise_level_mv(frames[("dev-0002", START_MS + 9000)].samples) < 0.1
    truth = ground_truth(config)
    assert [(t["device_id"], t["kind"], t["start_ms"] - START_MS, t["end_ms"] - START_MS) for t in truth] == [
        ("dev-0001", "tachycardia", 4000, 7000), ("dev-0002", "asystole", 2000, 4000),
        ("dev-0002", "noise", 6000, 8000)]
    assert truth[0]["patient_id"] == frames[("dev-0001", START_MS)].patient_id
    assert truth[0]["site"] == frames[("dev-0001", START_MS)].group  # the pseudonym's scope
    with pytest.raises(ValueError):
        Episode.parse("dev-0001:fibrillation:1:2")
    assert Episode.parse("dev-0001:noise:1.5:2") == Episode("dev-0001", "noise", 1.5, 2.0)
