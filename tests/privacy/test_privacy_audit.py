"""testkit.privacy_audit (auditor and cross-window attacker) and testkit.privacy_exhaustive on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from privacy_test_helpers import SPLIT_ROOT_HIERARCHY

from hierarchy import load_hierarchy
from privacy.planner import build_tree
from testkit.privacy_audit import AuditViolation, auditor_violations, cross_window_attack, cross_window_attack_prefixes
from testkit.privacy_exhaustive import exhaustive_levels

H = load_hierarchy(SPLIT_ROOT_HIERARCHY)  # labels below use its level 8 (0-79 / 80-159)
L1 = ("50-54", "F", "1011*")
L8 = ("0-79", "*", "*")


def test_auditor_groups_by_the_window_of_the_timestamp() -> None:
    points = [
        ("a", 1_000, 1, L1),
        ("b", 2_000, 1, L1),
        ("a", 6_000, 1, L1),  # next 5 s window: alone there
        ("t", 6_500, 9, ("*", "*", "*")),  # level 9 is not a class
        ("c", 7_000, 8, {"age": "0-79", "sex": "*", "zip": "*"}),
        ("d", 7_100, 8, L8),
    ]
    got = auditor_violations(H, points, 5000, 2)
    assert got == [AuditViolation(5000, 1, L1, frozenset({"a"}))]
    assert auditor_violations(H, points, 10_000, 2) == []


def test_attacker_intersects_every_label_of_a_pseudonym() -> None:
    true_qi = {
        "a": {"age": 51, "sex": "F", "zip": "10115"},
        "b": {"age": 52, "sex": "F", "zip": "10116"},
        "c": {"age": 71, "sex": "M", "zip": "20000"},
        "x": {"age": 85, "sex": "M", "zip": "20000"},
    }
    published = {
        "a": [(1, L1), (8, L8)],
        "b": [(8, L8)],
        "c": [(8, L8), (5, ("60-79", "*", "2****"))],  # c's level-5 label excludes a and b's QIs
        "x": [(8, ("80-159", "*", "*"))],
    }
    report = cross_window_attack(H, published, true_qi, 2)
    # a: a, b (c's level-5 label excludes age 51); c: b, c (a's level-1 label excludes c); x: alone
    # (nobody else is published in the 80+ half).
    assert report.candidates == {"a": 2, "b": 2, "c": 2, "x": 1}
    assert report.below_k == {"x": 1}
    assert report.min_candidates == 1
    # Never published with a label: nothing to narrow down.
    assert cross_window_attack(H, {}, true_qi, 2).candidates == {"a": 0, "b": 0, "c": 0, "x": 0}


def test_attacker_at_every_prefix_remembers_early_pseudonyms() -> None:
    true_qi = {"a": {"age": 51, "sex": "F", "zip": "10115"}, "b": {"age": 52, "sex": "F", "zip": "10116"}}
    points = [("a", 0, 1, L1), ("b", 0, 1, L1), ("a", 5000, 8, L8), ("b", 5000, 8, L8)]
    assert cross_window_attack_prefixes(H, points, true_qi, 2, 5000) == (2, [])
    # b published in the second window only: after the first window a stands alone.
    late = [("a", 0, 1, L1), ("b", 5000, 1, L1)]
    worst, below = cross_window_attack_prefixes(H, late, true_qi, 2, 5000)
    assert worst == 1 and below == [(0, "a", 1)]


def test_exhaustive_small_cases() -> None:
    qi = {
        "age": np.array([51.0, 52.0, 53.0, 90.0]),
        "sex": np.array(["F", "F", "F", "M"]),
        "zip": np.array(["10115", "10116", "10117", "99999"]),
    }
    tree = build_tree(H, qi)
    levels, cost = exhaustive_levels(tree, 3, 5.0)
    assert levels.tolist() == [1, 1, 1, 9]
    assert cost == pytest.approx(3 * tree.cost[0][tree.node[0][0]] + 5.0)
    levels, _ = exhaustive_levels(tree, 4, 5.0)  # 90 M is in the other level-8 node: nobody can be published
    assert levels.tolist() == [9, 9, 9, 9]
    one_root = build_tree(load_hierarchy(), qi)  # the default hierarchy: all four share level 8
    assert exhaustive_levels(one_root, 4, 5.0)[0].tolist() == [8, 8, 8, 8]
    # Anchored at level 3: the class can sit no lower.
    levels, _ = exhaustive_levels(tree, 3, 5.0, anchor_level=np.array([3, 0, 0, 0]), eligible=np.ones(4, bool))
    assert levels.tolist() == [3, 3, 3, 9]
    # Ineligible newcomers need >= k newcomers in their class.
    levels, _ = exhaustive_levels(tree, 3, 5.0, anchor_level=np.array([1, 1, 0, 0]), eligible=np.zeros(4, bool))
    assert levels.tolist() == [9, 9, 9, 9]
    with pytest.raises(ValueError):
        exhaustive_levels(build_tree(H, {a: np.repeat(v, 4) for a, v in qi.items()}), 3, 17.0)
