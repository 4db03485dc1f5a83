"""hierarchy.loader: the default file, vectorized generalization and every validation error."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from hierarchy import DEFAULT_HIERARCHY_PATH, HierarchyError, load_hierarchy

HEADER = "level,age,sex,zip,ecg_mv"
GOOD_ROWS = [
    "1,band:5,keep,prefix:4,round:0.005",
    "2,band:10,keep,prefix:3,round:0.01",
    "3,band:10,keep,prefix:2,round:0.01",
    "4,band:20,keep,prefix:2,round:0.02",
    "5,band:20,*,prefix:1,round:0.05",
    "6,band:40,*,prefix:1,round:0.05",
    "7,band:40,*,prefix:0,round:0.1",
    "8,band:80,*,*,round:0.1",
    "9,*,*,*,*",
]


def write(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    p = tmp_path / "h.csv"
    p.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return p


def with_row(level: int, cells: str) -> list[str]:
    rows = list(GOOD_ROWS)
    rows[level - 1] = f"{level},{cells}"
    return rows


def test_default_file_is_valid() -> None:
    h = load_hierarchy(DEFAULT_HIERARCHY_PATH)
    assert h.quasi_identifiers == ("age", "sex", "zip")
    assert [h.ecg_precision(lv) for lv in range(1, 9)] == sorted(h.ecg_precision(lv) for lv in range(1, 9))
    assert math.isinf(h.ecg_precision(9))
    for attr in h.quasi_identifiers:
        assert h.rule(attr, 9).kind == "star"
        # Level 8 is one class per window (every QI '*', the waveform kept at 0.1 mV): nobody has
        # to be suppressed while the window holds >= k patients (docs/privacy.md, section 2).
        assert h.rule(attr, 8).kind == "star"


def test_generalize_vectorized_labels() -> None:
    h = load_hierarchy()
    ages = np.array([0, 4, 5, 54, 50, 120])
    assert h.generalize("age", ages, 1).tolist() == ["0-4", "0-4", "5-9", "50-54", "50-54", "120-124"]
    assert h.generalize("age", ages, 2).tolist() == ["0-9", "0-9", "0-9", "50-59", "50-59", "120-129"]
    assert h.generalize("age", ages, 9).tolist() == ["*"] * 6
    zips = np.array(["10115", "10117", "101", "20000"])
    assert h.generalize("zip", zips, 1).tolist() == ["1011*", "1011*", "101", "2000*"]
    assert h.generalize("zip", zips, 7).tolist() == ["*****", "*****", "***", "*****"]
    assert h.generalize("sex", np.array(["F", "M", "U"]), 4).tolist() == ["F", "M", "U"]
    assert h.generalize("sex", np.array(["F", "M", "U"]), 5).tolist() == ["*", "*", "*"]


def test_codes_group_equal_labels() -> None:
    h = load_hierarchy()
    labels, inv = h.codes("age", np.array([51, 53, 57, 12]), 1)
    assert labels[inv].tolist() == ["50-54", "50-54", "55-59", "10-14"]
    assert inv[0] == inv[1] != inv[2]


def test_round_ecg_per_level() -> None:
    h = load_hierarchy()
    x = np.array([0.0149, 0.1234, -0.0026, 1.0])
    assert h.round_ecg(x, 1).tolist() == [0.015, 0.125, -0.005, 1.0]
    assert h.round_ecg(x, 2).tolist() == [0.01, 0.12, -0.0, 1.0]
    assert h.round_ecg(x, 8).tolist() == [0.0, 0.1, -0.0, 1.0]
    with pytest.raises(ValueError):
        h.round_ecg(x, 9)


@pytest.mark.parametrize(
    ("rows", "row", "column", "fragment"),
    [
        (with_row(3, "decade,keep,prefix:2,round:0.01"), "row 3", "column age", "unknown rule"),
        (with_row(2, "band:x,keep,prefix:3,round:0.01"), "row 2", "column age", "bad number"),
        (with_row(2, "band:10,keep,prefix:3,round:abc"), "row 2", "column ecg_mv", "bad number"),
        (with_row(4, "band:20,keep,prefix:-1,round:0.02"), "row 4", "column zip", "bad number"),
        (with_row(9, "*,keep,*,*"), "row 9", "column sex", "level 9 must be '*'"),
        (with_row(2, "band:7,keep,prefix:3,round:0.01"), "row 2", "column age", "not nested"),
        (with_row(2, "band:10,keep,prefix:5,round:0.01"), "row 2", "column zip", "not nested"),
        (with_row(6, "band:40,keep,prefix:1,round:0.05"), "row 6", "column sex", "not nested"),
        (with_row(2, "band:10,keep,prefix:3,round:0.001"), "row 2", "column ecg_mv", "not nested"),
        (with_row(2, "band:10,keep,prefix:3,band:5"), "row 2", "column ecg_mv", "not allowed"),
        (with_row(2, "round:1,keep,prefix:3,round:0.01"), "row 2", "column age", "only for ecg_mv"),
        (GOOD_ROWS[:4] + GOOD_ROWS[5:], "row 5", "column level", "contiguous"),
        ([*GOOD_ROWS[:8], "10,*,*,*,*", GOOD_ROWS[8]], "row 10", "column level", "contiguous"),
        ([*GOOD_ROWS, "3,band:10,keep,prefix:2,round:0.01"], "row 3", "column level", "duplicate"),
        (with_row(5, "band:20,*,prefix:1"), "row 5", "column level", "expected 5 cells"),
    ],
)
def test_invalid_files_name_file_row_and_column(
    tmp_path: Path, rows: list[str], row: str, column: str, fragment: str
) -> None:
    path = write(tmp_path, rows)
    with pytest.raises(HierarchyError) as err:
        load_hierarchy(path)
    msg = str(err.value)
    assert str(path) in msg
    assert row in msg
    assert column in msg
    assert fragment in msg


def test_header_must_start_with_level(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_ROWS, header="lvl,age,sex,zip,ecg_mv")
    with pytest.raises(HierarchyError, match="first column must be 'level'"):
        load_hierarchy(path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(HierarchyError, match=r"nope\.csv"):
        load_hierarchy(tmp_path / "nope.csv")


def test_extra_quasi_identifier_column(tmp_path: Path) -> None:
    rows = [r.replace(",", ",keep,", 1) if not r.startswith("9,") else "9,*,*,*,*,*" for r in GOOD_ROWS]
    rows = [r if r.startswith("9,") or i < 4 else r.replace(",keep,", ",*,", 1) for i, r in enumerate(rows)]
    path = write(tmp_path, rows, header="level,ward,age,sex,zip,ecg_mv")
    h = load_hierarchy(path)
    assert h.quasi_identifiers == ("ward", "age", "sex", "zip")
    assert h.generalize("ward", np.array(["w3", "w4"]), 1).tolist() == ["w3", "w4"]
    assert h.generalize("ward", np.array(["w3", "w4"]), 5).tolist() == ["*", "*"]


def test_keep_may_be_followed_by_anything_and_star_only_by_star(tmp_path: Path) -> None:
    ok = with_row(1, "keep,keep,keep,keep")
    assert load_hierarchy(write(tmp_path, ok)).rule("zip", 1).kind == "keep"
    bad = with_row(5, "band:20,*,prefix:1,round:0.05")
    bad[5] = "6,band:40,keep,prefix:1,round:0.05"
    with pytest.raises(HierarchyError, match=r"row 6, column sex: not nested.*follows '\*'"):
        load_hierarchy(write(tmp_path, bad))
