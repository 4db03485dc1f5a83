"""anomaly.quality: the noise level of a block's frames in one call is each frame's own, to the bit."""

from __future__ import annotations

import numpy as np

from anomaly.quality import noise_level_mv, noise_levels_mv


def test_a_blocks_noise_levels_are_each_frames_own() -> None:
    rng = np.random.default_rng(24)
    for length in (250, 251, 360, 3):
        frames = [rng.normal(0.0, scale, length) for scale in (0.01, 0.05, 0.2, 1.0, 0.0)]
        assert noise_levels_mv(frames) == [noise_level_mv(frame) for frame in frames]
    with_nan = [rng.normal(0.0, 0.1, 250) for _ in range(3)]
    with_nan[1][7] = np.nan
    levels = noise_levels_mv(with_nan)
    assert np.isnan(levels[1]) and levels[0] == noise_level_mv(with_nan[0])
    mixed = [rng.normal(0.0, 0.1, 250), rng.normal(0.0, 0.1, 120), np.zeros(2)]
    assert noise_levels_mv(mixed) == [noise_level_mv(frame) for frame in mixed]
    assert noise_levels_mv([]) == []
