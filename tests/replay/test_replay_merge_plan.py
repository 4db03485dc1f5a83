"""The merge plan of a replay (replay/merge.py) against an in-memory model of InfluxDB: applied request by request,
no state in between shows a class below k, the end state is the rebuilt window, and a second merge is empty."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import pytest

from replay.merge import Delete, Points, Series, WindowPlan, class_of, plan_window

MEASUREMENT = "ecg_anonymized"
FIELDS = ["ecg_mv", "hr_bpm", "imputed"]
START, END = 1_000_000_000_000, 1_005_000_000_000
LABELS = [("3", "50-59", "F", "10***"), ("3", "60-69", "M", "10***"), ("5", "40-59", "*", "1****"),
          ("7", "40-79", "*", "*****"), ("8", "*", "*", "*")]


def series(pid: str, level: str, age: str, sex: str, zip_code: str) -> Series:
    return tuple(sorted({"pid": pid, "lead": "II", "level": level, "age": age, "sex": sex, "zip": zip_code}.items()))


def window(rng: random.Random, pids: list[str], k: int, suppressed: int, hr: float) -> Points:
    """Each pid in one class, every class >= k; a few level-9 token series; 5 samples per pid."""
    shuffled = pids[:]
    rng.shuffle(shuffled)
    classes = rng.sample(LABELS, min(len(LABELS), max(1, len(shuffled) // k)))
    points: Points = {}
    for index, pid in enumerate(shuffled):
        labels = classes[min(index // k, len(classes) - 1)]
        points[series(pid, *labels)] = {START + i * 1_000_000_000: (round(0.1 * i, 2), hr, False) for i in range(5)}
    for token in range(suppressed):
        points[series(f"tok{rng.random():.6f}{token}", "9", "*", "*", "*")] = {
            START + i * 1_000_000_000: (0.01, hr, True) for i in range(5)}
    return points


def parse_line(line: str) -> tuple[Series, int, tuple[Any, ...]]:
    head, fields_text, stamp = line.split(" ")
    tags = tuple(sorted(tuple(pair.split("=", 1)) for pair in head.split(",")[1:]))
    values = dict(pair.split("=", 1) for pair in fields_text.split(","))

    def typed(text: str | None) -> Any:
        if text is None:
            return None
        return text == "true" if text in ("true", "false") else float(text)

    return tags, int(stamp), tuple(typed(values.get(name)) for name in FIELDS)  # type: ignore[return-value]


def apply(db: Points, step: list[str] | Delete) -> None:
    if isinstance(step, Delete):
        for name in list(db):
            if set(step.tags) <= set(name):
                db[name] = {t: v for t, v in db[name].items() if not step.start_ns <= t < step.end_ns}
                if not db[name]:
                    del db[name]
        return
    for line in step:
        name, stamp, values = parse_line(line)
        db.setdefault(name, {})[stamp] = values


def classes_below_k(db: Points, k: int) -> list[str]:
    members: dict[Any, set[str]] = defaultdict(set)
    for name, points in db.items():
        klass = class_of(name)
        if klass is not None and points:
            members[klass].add(dict(name)["pid"])
    return [f"{klass}: {len(pids)}" for klass, pids in members.items() if len(pids) < k]


def run(plan: WindowPlan, live: Points, k: int) -> tuple[Points, list[str]]:
    db = {name: dict(points) for name, points in live.items()}
    seen: list[str] = []
    for step in [*plan.writes, *plan.deletes]:
        apply(db, step)
        seen += classes_below_k(db, k)
    return db, seen


@pytest.mark.parametrize("seed", range(40))
def test_every_state_of_a_merge_keeps_k_and_ends_as_the_rebuilt_window(seed: int) -> None:
    rng = random.Random(seed)
    k = rng.choice([2, 3, 5])
    old = [f"p{i}" for i in range(rng.randint(k, 4 * k))]
    new = old[: rng.randint(max(0, len(old) - k), len(old))] + [f"n{i}" for i in range(rng.randint(0, 2 * k))]
    if len(new) < k:
        new += [f"m{i}" for i in range(k)]
    live = window(rng, old, k, rng.randint(0, 2), 70.0)
    rebuilt = window(rng, new, k, rng.randint(0, 2), rng.choice([70.0, 71.5]))
    assert classes_below_k(live, k) == [] and classes_below_k(rebuilt, k) == []
    plan = plan_window(MEASUREMENT, START, END, live, rebuilt, FIELDS, k=k, max_points=rng.choice([7, 40, 10_000]))
    final, violations = run(plan, live, k)
    assert violations == []
    assert final == rebuilt
    assert plan_window(MEASUREMENT, START, END, final, rebuilt, FIELDS, k=k, max_points=40).empty


def test_a_vanishing_class_goes_in_one_statement_and_per_series_deletes_would_break_k() -> None:
    k = 3
    live = {series(f"p{i}", "3", "50-59", "F", "10***"): {START: (0.1, 70.0, False)} for i in range(k)}
    rebuilt = {series(f"p{i}", "8", "*", "*", "*"): {START: (0.1, 70.0, False)} for i in range(k)}
    plan = plan_window(MEASUREMENT, START, END, live, rebuilt, FIELDS, k=k, max_points=100)
    assert plan.classes_deleted == 1 and len(plan.deletes) == 1
    assert "DELETE FROM \"ecg_anonymized\" WHERE" in plan.deletes[0].statement(MEASUREMENT)
    assert run(plan, live, k) == (rebuilt, [])
    # The control: the same class deleted series by series shows it below k in between.
    naive = WindowPlan(writes=plan.writes, deletes=[Delete(name, START, END) for name in sorted(live)])
    assert run(naive, live, k)[1] != []


def test_identical_windows_need_no_request() -> None:
    rng = random.Random(7)
    live = window(rng, [f"p{i}" for i in range(10)], 5, 2, 70.0)
    assert plan_window(MEASUREMENT, START, END, live, live, FIELDS, k=5, max_points=100).empty
