"""Exhaustive optimum of the level-assignment model for small windows (tests and benchmarks).

Set-partition DP over subsets, O(3^n) (n <= 14): a block B is one class at the lowest level where
all its members share a node (and that is at or above every anchored member's anchor level), size
>= k, cost ``|B| * c(node)``; a suppressed patient is a block of its own at ``supp_cost``.
``f(S) = min over blocks B containing the lowest member of S of cost(B) + f(S \\ B)``.

With history the same anchor rules as ``privacy.planner.plan_levels`` hold, in their block-local
form: an anchored patient is published at its anchor or an ancestor; a class holding a newcomer
that is not eligible (fewer than k-1 anchors on its path) must hold >= k newcomers (all anchored at
that node now, so the cross-window bound holds for each of them). The planner's two phases satisfy
this rule, so its cost is never below this optimum; the difference is the planner's gap.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from hierarchy.loader import SUPPRESSED_LEVEL
from privacy.planner import MAX_PUBLISHED_LEVEL, WindowTree

__all__ = ["MAX_EXHAUSTIVE_PATIENTS", "exhaustive_levels"]

MAX_EXHAUSTIVE_PATIENTS = 14


@lru_cache(maxsize=16)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (S, B) with B subset of S containing S's lowest member, sorted by |S| then S; and the
    start of each |S| layer."""
    codes = np.arange(3**n, dtype=np.int64)
    s = np.zeros(codes.shape[0], dtype=np.int64)
    b = np.zeros(codes.shape[0], dtype=np.int64)
    rest = codes.copy()
    for i in range(n):
        digit = rest % 3  # 0: not in S, 1: in S only, 2: in S and B
        rest //= 3
        s |= (digit > 0).astype(np.int64) << i
        b |= (digit == 2).astype(np.int64) << i
    low = s & -s
    keep = (s > 0) & ((b & low) != 0)
    s, b = s[keep], b[keep]
    size = _popcount(s)
    order = np.lexsort((s, size))
    s, b, size = s[order], b[order], size[order]
    layer_start = np.searchsorted(size, np.arange(n + 2))
    return s, b, layer_start


def _popcount(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.int64)
    count = np.zeros(x.shape[0], dtype=np.int64)
    while np.any(x):
        count += x & 1
        x = x >> 1
    return count


def exhaustive_levels(
    tree: WindowTree,
    k: int,
    supp_cost: float,
    anchor_level: np.ndarray | None = None,
    eligible: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Optimal levels 1..9 of all ``tree.n`` patients and the optimal cost (same objective as the
    planner: sum of node costs + ``supp_cost`` per suppressed patient)."""
    n = tree.n
    if n > MAX_EXHAUSTIVE_PATIENTS:
        raise ValueError(f"exhaustive search is for <= {MAX_EXHAUSTIVE_PATIENTS} patients, got {n}")
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0.0
    anchor = np.zeros(n, dtype=np.int64) if anchor_level is None else np.asarray(anchor_level, dtype=np.int64)
    elig = np.zeros(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    full = (1 << n) - 1
    subsets = np.arange(full + 1, dtype=np.int64)
    size = _popcount(subsets)
    low = subsets & -subsets
    low_index = np.zeros(full + 1, dtype=np.int64)
    max_anchor = np.zeros(full + 1, dtype=np.int64)
    for i in range(n):
        has = (subsets >> i) & 1 == 1
        low_index[low == (1 << i)] = i
        max_anchor[has] = np.maximum(max_anchor[has], anchor[i])
    newcomer_mask = sum(1 << i for i in range(n) if anchor[i] == 0)
    inel_mask = sum(1 << i for i in range(n) if anchor[i] == 0 and not elig[i])
    newcomers = _popcount(subsets & newcomer_mask)
    has_inel = (subsets & inel_mask) != 0
    lca = np.full(full + 1, SUPPRESSED_LEVEL, dtype=np.int64)
    for level in range(MAX_PUBLISHED_LEVEL, 0, -1):
        codes = tree.node[level - 1]
        same = np.zeros(full + 1, dtype=bool)
        for code in np.unique(codes).tolist():
            group = sum(1 << i for i in range(n) if codes[i] == code)
            same |= (subsets & ~group) == 0
        lca = np.where(same & (level >= np.maximum(max_anchor, 1)), level, lca)
    ok = (size >= k) & (lca <= MAX_PUBLISHED_LEVEL) & (~has_inel | (newcomers >= k))
    node_cost = np.zeros(full + 1)
    for level in range(1, MAX_PUBLISHED_LEVEL + 1):
        at = lca == level
        node_cost[at] = tree.cost[level - 1][tree.node[level - 1][low_index[at]]]
    class_cost = np.where(ok, size * node_cost, np.inf)
    block_cost = np.where(size == 1, np.minimum(class_cost, supp_cost), class_cost)
    suppressed_block = (size == 1) & (class_cost > supp_cost)

    s, b, layer_start = _pairs(n)
    best = np.full(full + 1, np.inf)
    best[0] = 0.0
    choice = np.zeros(full + 1, dtype=np.int64)
    for layer in range(1, n + 1):
        lo, hi = int(layer_start[layer]), int(layer_start[layer + 1])
        ls, lb = s[lo:hi], b[lo:hi]
        vals = best[ls ^ lb] + block_cost[lb]
        order = np.lexsort((vals, ls))
        first = np.unique(ls[order], return_index=True)[1]
        pick = order[first]
        best[ls[pick]] = vals[pick]
        choice[ls[pick]] = lb[pick]
    levels = np.zeros(n, dtype=np.int64)
    rest = full
    while rest:
        blk = int(choice[rest])
        lv = SUPPRESSED_LEVEL if suppressed_block[blk] else int(lca[blk])
        for i in range(n):
            if blk >> i & 1:
                levels[i] = lv
        rest ^= blk
    return levels, float(best[full])
