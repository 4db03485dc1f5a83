"""Real and synthetic ECG signals for the simulator.

Real data: MIT-BIH Arrhythmia Database record 208 (lead MLII, 360 Hz, 300 s), as shipped in the
SciPy 1.14.1 wheel (`scipy/misc/ecg.dat`; `scipy.misc` was removed in SciPy 1.15). The project does
not pin an old SciPy: `ensure_ecg_dat` downloads that one wheel with pip, extracts only the data file
and checks its SHA-256. Run `python -m devstack.ecg_data` once (the setup script does).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from connectors.jars import sha256_file

ECG_DAT_SHA256 = "f20ad3365fb9b7f845d0e5c48b6fe67081377ee466c3a220b7f69f35c8958baf"
ECG_DAT_MEMBER = "scipy/misc/ecg.dat"
SCIPY_WHEEL_VERSION = "1.14.1"
DEFAULT_CACHE_DIR = Path(".cache/data")
ECG_DAT_ENV = "ECG_DAT"  # optional override: path to an already verified ecg.dat

MITBIH_FS_HZ = 360
MITBIH_208_SAMPLES = 108_000  # 300 s at 360 Hz
# ADC conversion from scipy.misc.electrocardiogram: (raw - adc_zero) / adc_gain.
MITBIH_ADC_ZERO = 1024
MITBIH_ADC_GAIN = 200.0


class EcgDataError(RuntimeError):
    pass


def extract_ecg_dat(wheel: Path, destination: Path) -> Path:
    """Copy `scipy/misc/ecg.dat` out of a SciPy wheel to `destination`, verifying its SHA-256."""
    with zipfile.ZipFile(wheel) as archive:
        try:
            data = archive.read(ECG_DAT_MEMBER)
        except KeyError:
            raise EcgDataError(f"{wheel} has no {ECG_DAT_MEMBER}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != ECG_DAT_SHA256:
        raise EcgDataError(f"{ECG_DAT_MEMBER} in {wheel}: sha256 {actual}, expected {ECG_DAT_SHA256}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so an interrupted run never leaves a partial file that looks cached.
    partial = destination.with_suffix(destination.suffix + ".partial")
    partial.write_bytes(data)
    partial.replace(destination)
    return destination


def download_scipy_wheel(directory: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", f"scipy=={SCIPY_WHEEL_VERSION}",
        "--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
        "--disable-pip-version-check", "-d", str(directory),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise EcgDataError(f"pip download of scipy {SCIPY_WHEEL_VERSION} failed:\n{completed.stderr[-2000:]}")
    wheels = sorted(directory.glob(f"scipy-{SCIPY_WHEEL_VERSION}-*.whl"))
    if not wheels:
        raise EcgDataError(f"pip download left no scipy wheel in {directory}")
    return wheels[0]


def ensure_ecg_dat(cache_dir: Path = DEFAULT_CACHE_DIR, wheel: Path | None = None) -> Path:
    """Path of a verified `ecg.dat`, fetching it (from `wheel` or with pip) when not cached.

    `$ECG_DAT` may point at an existing copy; it is verified like the cached one.
    """
    override = os.environ.get(ECG_DAT_ENV)
    target = Path(override) if override else Path(cache_dir) / "ecg.dat"
    if target.is_file():
        actual = sha256_file(target)
        if actual == ECG_DAT_SHA256:
            return target
        if override:
            raise EcgDataError(f"${ECG_DAT_ENV}={target}: sha256 {actual}, expected {ECG_DAT_SHA256}")
        target.unlink()  # corrupt cache: fetch again
    if wheel is not None:
        return extract_ecg_dat(Path(wheel), target)
    with tempfile.TemporaryDirectory(prefix="scipy-wheel-") as temporary:
        return extract_ecg_dat(download_scipy_wheel(Path(temporary)), target)


def load_mitbih_208(path: Path | None = None) -> np.ndarray:
    """MIT-BIH record 208, lead MLII, in millivolts (float64, 108000 samples at 360 Hz).

    `ecg.dat` is an .npz archive with one uint16 array `ecg` of raw ADC values; loaded without
    pickle support, as scipy.misc.electrocardiogram does.
    """
    source = ensure_ecg_dat() if path is None else Path(path)
    with np.load(source, allow_pickle=False) as archive:
        raw = archive["ecg"]
    if raw.shape != (MITBIH_208_SAMPLES,):
        raise EcgDataError(f"{source}: unexpected shape {raw.shape}")
    return (raw.astype(np.float64) - MITBIH_ADC_ZERO) / MITBIH_ADC_GAIN


# Gaussian P-QRS-T model: (offset from the R peak in s at 60 bpm, amplitude mV, width s).
_WAVES = (
    (-0.20, 0.15, 0.025),  # P
    (-0.03, -0.12, 0.010),  # Q
    (0.00, 1.20, 0.012),  # R
    (0.03, -0.25, 0.010),  # S
    (0.30, 0.30, 0.060),  # T
)


def synthetic_ecg(seconds: float, fs: float, hr_bpm: float, rng: np.random.Generator) -> np.ndarray:
    """A plausible single-lead ECG in mV: Gaussian P-QRS-T beats with 3 % RR jitter, baseline
    wander and a little noise. For tests and runs without the real record."""
    n = round(seconds * fs)
    t = np.arange(n) / fs
    signal = np.zeros(n)
    mean_rr = 60.0 / hr_bpm
    # Beat times: start before 0 so the first P/T waves are not cut; jittered RR intervals.
    beat = -rng.uniform(0.0, mean_rr)
    while beat < seconds + mean_rr:
        rr = mean_rr * (1.0 + 0.03 * rng.standard_normal())
        # P and T timing stretches with the RR interval (Bazett-like sqrt scaling); QRS does not.
        stretch = np.sqrt(max(rr, 0.2))
        for offset, amplitude, width in _WAVES:
            centre = beat + (offset * stretch if abs(offset) > 0.05 else offset)
            low = max(0, int((centre - 4 * width) * fs))
            high = min(n, int((centre + 4 * width) * fs) + 1)
            if low < high:
                segment = t[low:high]
                signal[low:high] += amplitude * np.exp(-0.5 * ((segment - centre) / width) ** 2)
        beat += rr
    wander = 0.05 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi))
    return signal + wander + 0.01 * rng.standard_normal(n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch and verify MIT-BIH record 208 (scipy ecg.dat).")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--wheel", type=Path, help="use this already downloaded scipy 1.14.1 wheel")
    args = parser.parse_args(argv)
    try:
        path = ensure_ecg_dat(args.cache_dir, wheel=args.wheel)
        ecg = load_mitbih_208(path)
    except EcgDataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{path}: {ecg.size} samples at {MITBIH_FS_HZ} Hz, {ecg.min():.3f}..{ecg.max():.3f} mV, sha256 ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
