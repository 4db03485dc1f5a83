"""MIT-BIH record 208 from the SciPy 1.14.1 wheel, and the synthetic fallback."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from connectors.jars import sha256_file
from devstack import ecg_data
from devstack.ecg_data import (
    ECG_DAT_SHA256,
    EcgDataError,
    download_scipy_wheel,
    ensure_ecg_dat,
    extract_ecg_dat,
    load_mitbih_208,
    synthetic_ecg,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ecg_dat() -> Path:
    # The setup script fetches the record into the repo's cache; this fetches it (pip) if missing.
    return ensure_ecg_dat(REPO_ROOT / ".cache" / "data")


def test_record_208_shape_and_range(ecg_dat: Path) -> None:
    ecg = load_mitbih_208(ecg_dat)
    assert ecg.shape == (108_000,) and ecg.dtype == np.float64  # 300 s at 360 Hz
    assert ecg.min() == pytest.approx(-3.485) and ecg.max() == pytest.approx(3.65)  # documented in scipy
    assert -0.5 < float(np.median(ecg)) < 0.5
    assert 0.1 < float(np.std(ecg)) < 1.0
    # ADC step 1/200 mV: values are exact multiples of 5 µV.
    np.testing.assert_allclose(ecg * 200, np.round(ecg * 200), atol=1e-9)


def test_cached_file_matches_pinned_sha256(ecg_dat: Path) -> None:
    assert sha256_file(ecg_dat) == ECG_DAT_SHA256


def _fake_wheel(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(ecg_data.ECG_DAT_MEMBER, payload)
        archive.writestr("scipy/other.py", "ignored")
    return path


def test_extract_rejects_wrong_checksum(tmp_path: Path) -> None:
    wheel = _fake_wheel(tmp_path / "scipy-1.14.1-fake.whl", b"not the record")
    with pytest.raises(EcgDataError, match="sha256"):
        extract_ecg_dat(wheel, tmp_path / "out" / "ecg.dat")
    assert not (tmp_path / "out" / "ecg.dat").exists()


def test_extract_rejects_wheel_without_record(tmp_path: Path) -> None:
    wheel = tmp_path / "empty.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("scipy/__init__.py", "")
    with pytest.raises(EcgDataError, match=r"no scipy/misc/ecg\.dat"):
        extract_ecg_dat(wheel, tmp_path / "ecg.dat")


def test_ensure_uses_given_wheel_and_replaces_corrupt_cache(tmp_path: Path, ecg_dat: Path) -> None:
    wheel = _fake_wheel(tmp_path / "scipy.whl", ecg_dat.read_bytes())
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ecg.dat").write_bytes(b"corrupt")
    path = ensure_ecg_dat(cache, wheel=wheel)
    assert path == cache / "ecg.dat" and sha256_file(path) == ECG_DAT_SHA256
    assert ensure_ecg_dat(cache) == path  # cached: no download


def test_env_override_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ecg_dat: Path) -> None:
    monkeypatch.setenv("ECG_DAT", str(ecg_dat))
    assert ensure_ecg_dat(tmp_path / "unused") == ecg_dat
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"x")
    monkeypatch.setenv("ECG_DAT", str(bad))
    with pytest.raises(EcgDataError, match="sha256"):
        ensure_ecg_dat(tmp_path / "unused")


def test_extract_from_real_wheel(tmp_path: Path) -> None:
    # The path the setup script takes on a fresh machine: pip fetches the wheel, the record is extracted.
    wheel = download_scipy_wheel(tmp_path)
    assert wheel.name.startswith("scipy-1.14.1-")
    path = extract_ecg_dat(wheel, tmp_path / "ecg.dat")
    assert load_mitbih_208(path).shape == (108_000,)


def test_load_rejects_unexpected_shape(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, ecg=np.zeros(10, dtype=np.uint16))
    path = tmp_path / "short.dat"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(EcgDataError, match="shape"):
        load_mitbih_208(path)


def test_synthetic_ecg_is_plausible_and_deterministic() -> None:
    from devstack.simulator import detect_r_peaks

    signal = synthetic_ecg(60.0, 250.0, 75.0, np.random.default_rng(1))
    assert signal.shape == (15_000,)
    assert np.isfinite(signal).all()
    assert 0.8 < signal.max() < 2.0 and -0.8 < signal.min() < 0.0  # R ~1.2 mV, S ~-0.25 mV
    peaks = detect_r_peaks(signal, 250.0)
    assert 70 <= len(peaks) <= 80  # 75 bpm for a minute
    np.testing.assert_array_equal(signal, synthetic_ecg(60.0, 250.0, 75.0, np.random.default_rng(1)))


def test_r_peak_detector_on_record_208(ecg_dat: Path) -> None:
    from devstack.simulator import detect_r_peaks

    peaks = detect_r_peaks(load_mitbih_208(ecg_dat), 360.0)
    # Record 208 has 2955 beats in 30 min (~98.5 bpm); 5 minutes hold roughly 490.
    assert 440 <= len(peaks) <= 540
