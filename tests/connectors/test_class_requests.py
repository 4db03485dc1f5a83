"""Write requests never split an equivalence class below k (what a reader sees mid-window)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.influxdb import class_key, class_requests, frame_lines
from privacy.model import PublishedFrame

START_MS = 1_763_812_800_000


def frame(pid: str, label: str, level: int = 3, second: int = 0, samples: int = 4) -> PublishedFrame:
    return PublishedFrame(pid=pid, lead="II", ts_ms=START_MS + 1000 * second, fs=250.0, level=level,
                          qi={"age": label, "sex": "*", "zip": "1****"}, ecg_mv=np.zeros(samples), hr_bpm=70.0,
                          imputed=False)


def visible_classes(requests: list[list[str]]) -> dict[str, set[str]]:
    """Per class (the tag set without pid/lead), the pids a reader sees in these requests."""
    seen: dict[str, set[str]] = defaultdict(set)
    for request in requests:
        for line in request:
            tags = dict(part.split("=", 1) for part in line.split(" ", 1)[0].split(",")[1:])
            pid = tags.pop("pid")
            tags.pop("lead")
            seen[",".join(f"{k}={v}" for k, v in sorted(tags.items()))].add(pid)
    return seen


def test_classes_that_fit_are_never_split() -> None:
    frames = [frame(f"p{i}", "50-54" if i < 5 else "60-64", second=s) for i in range(10) for s in range(5)]
    requests = list(class_requests(frames, "m", max_points=120, k=5))
    # each class is 5 patients x 5 frames x 4 samples = 100 points: one request per class
    assert [len(r) for r in requests] == [100, 100]
    assert [len(visible_classes([r])) for r in requests] == [1, 1]


def test_a_class_larger_than_a_request_is_cut_between_patients_into_parts_of_at_least_k() -> None:
    frames = [frame(f"p{i:02d}", "50-54", second=s) for i in range(12) for s in range(5)]  # 20 points each
    requests = list(class_requests(frames, "m", max_points=50, k=5))
    parts = [visible_classes([r]) for r in requests]
    assert [len(next(iter(p.values()))) for p in parts] == [5, 7]  # 6 + 6 would do, but never fewer than k
    assert sum(len(r) for r in requests) == 240


def test_every_point_once_and_deterministic_for_any_frame_order() -> None:
    frames = [frame(f"p{i}", f"{10 * (i % 3)}-{10 * (i % 3) + 4}", level=1 + i % 2, second=s)
              for i in range(9) for s in range(3)]
    expected = sorted(line for f in frames for line in frame_lines(f, "m"))
    first = list(class_requests(frames, "m", 30, 2))
    second = list(class_requests(list(reversed(frames)), "m", 30, 2))
    assert first == second
    assert sorted(line for r in first for line in r) == expected


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=2, max_value=9), min_size=1, max_size=6),
    frames_per_patient=st.integers(min_value=1, max_value=4),
    max_points=st.integers(min_value=1, max_value=200),
    k=st.integers(min_value=2, max_value=5),
)
def test_any_prefix_of_the_requests_shows_only_classes_of_at_least_k(
    sizes: list[int], frames_per_patient: int, max_points: int, k: int
) -> None:
    """Whatever prefix of a window's requests reached InfluxDB before a failure, each class a reader can
    see has >= k pseudonyms, provided the window's classes have (the privacy core's guarantee)."""
    frames = []
    for number, size in enumerate(sizes):
        for patient in range(max(size, k)):
            frames += [frame(f"c{number}p{patient}", f"{number}", second=s) for s in range(frames_per_patient)]
    requests = list(class_requests(frames, "m", max_points, k))
    for end in range(1, len(requests) + 1):
        assert all(len(pids) >= k for pids in visible_classes(requests[:end]).values())
    assert len({class_key(f) for f in frames}) == len(visible_classes(requests))
