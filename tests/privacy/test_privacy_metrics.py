"""privacy.metrics: NCP by hand on small tables, accounting helpers."""

from __future__ import annotations

import numpy as np
import pytest
from privacy_test_helpers import SPLIT_ROOT_HIERARCHY, frame

from hierarchy import load_hierarchy
from privacy.kanonymity import AnonymizationConfig, anonymize_window
from privacy.metrics import WindowMetrics, attribute_ncp, ncp_table

H = load_hierarchy()


def test_attribute_ncp_rules() -> None:
    ages = np.array([51, 52, 90])
    # band:5 -> (5-1)/(90-51); raw (level 0) -> 0; '*' -> 1
    assert attribute_ncp(H, "age", ages, np.array([1, 0, 9])).tolist() == pytest.approx([4 / 39, 0.0, 1.0])
    zips = np.array(["10115", "10116", "99999", "10200"])
    # prefix:4 at level 1: 1011* covers 2 of 4 observed values; 9999* and 1020* cover one -> 0
    assert attribute_ncp(H, "zip", zips, np.array([1, 1, 1, 1])).tolist() == pytest.approx([0.5, 0.5, 0.0, 0.0])
    # prefix:2 at level 3: 10*** covers 3 of 4
    assert attribute_ncp(H, "zip", zips, np.array([3, 3, 3, 3])).tolist() == pytest.approx([0.75, 0.75, 0.0, 0.75])
    assert attribute_ncp(H, "sex", np.array(["F", "M"]), np.array([4, 5])).tolist() == [0.0, 1.0]


def test_band_capped_at_one() -> None:
    assert attribute_ncp(H, "age", np.array([50, 52]), np.array([8, 8])).tolist() == [1.0, 1.0]


def test_ncp_table_local_and_global() -> None:
    raw = {
        "age": np.array([51, 52, 90]),
        "sex": np.array(["F", "F", "M"]),
        "zip": np.array(["10115", "10116", "99999"]),
    }
    expected_row = (4 / 39 + 0 + 2 / 3) / 3
    assert ncp_table(H, raw, np.array([1, 1, 9])) == pytest.approx((2 * expected_row + 1) / 3)
    per_attr = {"age": np.array([9, 9, 9]), "sex": np.array([0, 0, 0]), "zip": np.array([0, 0, 0])}
    assert ncp_table(H, raw, per_attr) == pytest.approx(1 / 3)
    assert ncp_table(H, {a: v[:0] for a, v in raw.items()}, np.array([], dtype=int)) == 0.0


def test_window_ncp_matches_table() -> None:
    frames = [
        frame("a", 51, "F", "10115", [0.1]),
        frame("b", 52, "F", "10116", [0.1]),
        frame("c", 90, "M", "99999", [0.1]),
    ]
    res = anonymize_window(frames, None, AnonymizationConfig(load_hierarchy(SPLIT_ROOT_HIERARCHY), 2), 0)
    assert res.metrics.ncp == pytest.approx((2 * (4 / 39 + 2 / 3) / 3 + 1) / 3)


def test_accounting_detects_imbalance() -> None:
    m = WindowMetrics(k=2, l_diversity=0, frames_in=3, samples_in=30, frames_published=2, samples_published=20)
    assert not m.accounting_ok()
    m.frames_suppressed, m.samples_suppressed = 1, 10
    assert m.accounting_ok()
    assert m.as_dict()["suppression_rate"] == 0.0


def test_mean_level_counts_suppressed_as_nine() -> None:
    m = WindowMetrics(k=2, l_diversity=0, patients_by_level={1: 3, 9: 1})
    assert m.mean_level == pytest.approx((3 + 9) / 4)
    assert WindowMetrics(k=2, l_diversity=0).mean_level == 0.0
