"""Optimal level assignment of one window: a tree DP over the nested generalization hierarchy.

Model (docs/privacy.md, section 2): every patient of a window gets ONE level L in 1..8 (all QIs
generalized to hierarchy row L) or 9 (suppressed). A class is (level, labels at that level); every
class at levels 1..8 needs >= k distinct patients. The loader enforces nesting, so the labels form a
tree: node (L, labels at L) has exactly one parent (L+1, labels at L+1); level 9 is the root, where
any number of patients may end (suppression).

Objective: minimize ``sum over patients of c(node) + BIG * suppressed`` with ``c(node)`` = mean over
QIs of ``privacy.metrics.attribute_ncp`` of the node's label (relative to the window's observed
values; monotone up the tree) and ``BIG > n``: first as few suppressed patients as possible, then
the lowest NCP.

Algorithm (exact): bottom-up over the tree, ``f_v(m)`` = minimal cost inside v's subtree when exactly
``m`` of its patients are passed up (placed above v or suppressed). At v, ``g_v`` = min-plus
convolution of the children's ``f`` (plus the patients entering at v), then
``f_v(m) = min over t >= m of g_v(t) + (t - m) * c(v)`` where ``t - m`` (the class at v) is 0 or
>= k. Passed-up patients are interchangeable for everything above v (their cost depends only on the
node they end at), so the count is a sufficient state. Exchange argument for the cap: if m >=
(8-L)(k-1) + k patients leave a level-L node v, keep at each ancestor only what that class needs to
stay >= k (at most k-1 each, none at the root) and move the other >= k back down into a class at v:
never more expensive. So ``m <= (9-L)(k-1)`` loses nothing and keeps every array short.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from hierarchy.loader import SUPPRESSED_LEVEL, Hierarchy
from privacy.metrics import attribute_ncp

__all__ = [
    "MAX_PUBLISHED_LEVEL",
    "WindowTree",
    "build_tree",
    "plan_levels",
    "repair_l_diversity",
    "tree_dp",
]

MAX_PUBLISHED_LEVEL = SUPPRESSED_LEVEL - 1
_INF = np.inf


@dataclass(frozen=True)
class WindowTree:
    """The label tree of one window's patients (one row per distinct patient).

    ``node[L-1][p]`` = code of patient p's node at level L (codes are 0..n_nodes-1 per level);
    ``parent[L-1][code]`` = code of that node's parent at L+1 (levels 1..7);
    ``cost[L-1][code]`` = c(node); ``labels[L-1][attr]`` = (label strings, per-patient index).
    """

    n: int
    qis: tuple[str, ...]
    node: np.ndarray  # (8, n) int64
    parent: tuple[np.ndarray, ...]
    cost: tuple[np.ndarray, ...]
    labels: tuple[dict[str, tuple[np.ndarray, np.ndarray]], ...]

    def n_nodes(self, level: int) -> int:
        return int(self.cost[level - 1].shape[0])

    def patient_labels(self, p: int, level: int) -> tuple[str, ...]:
        """Generalized labels of patient ``p`` at ``level`` (1..8), in QI order."""
        row = self.labels[level - 1]
        return tuple(str(row[a][0][row[a][1][p]]) for a in self.qis)

    def node_labels(self, level: int) -> list[tuple[str, ...]]:
        """Label tuple of every node code at ``level``."""
        codes = self.node[level - 1]
        _, first = np.unique(codes, return_index=True)
        return [self.patient_labels(int(p), level) for p in first.tolist()]


def _distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vals = np.asarray(values)
    if vals.dtype == object:
        vals = vals.astype(str) if all(isinstance(v, str) for v in vals.tolist()) else vals
    try:
        uniq, inv = np.unique(vals, return_inverse=True)
    except TypeError:  # mixed types (e.g. None among strings): compare as text
        uniq, inv = np.unique(np.array([str(v) for v in vals.tolist()]), return_inverse=True)
    return uniq, inv.reshape(-1)


def build_tree(hierarchy: Hierarchy, qi_values: dict[str, np.ndarray]) -> WindowTree:
    """Node codes, parents, node costs and labels of every patient at levels 1..8."""
    qis = hierarchy.quasi_identifiers
    n = len(next(iter(qi_values.values()))) if qi_values else 0
    node = np.zeros((MAX_PUBLISHED_LEVEL, n), dtype=np.int64)
    labels: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []
    costs: list[np.ndarray] = []
    distinct = {a: _distinct(qi_values[a]) for a in qis}
    for level in range(1, MAX_PUBLISHED_LEVEL + 1):
        key = np.zeros(n, dtype=np.int64)
        row: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        patient_cost = np.zeros(n, dtype=np.float64)
        for attr in qis:
            uniq, raw_inv = distinct[attr]
            lab, uniq_code = hierarchy.codes(attr, uniq, level)
            inv = uniq_code[raw_inv]
            row[attr] = (lab, inv)
            # Mixed-radix key, re-compressed after each attribute so it never overflows.
            _, key = np.unique(key * lab.shape[0] + inv, return_inverse=True)
            key = key.reshape(-1)
            patient_cost += attribute_ncp(hierarchy, attr, qi_values[attr], np.full(n, level))
        node[level - 1] = key
        labels.append(row)
        c = np.zeros(int(key.max()) + 1 if n else 0, dtype=np.float64)
        c[key] = patient_cost / max(1, len(qis))
        costs.append(c)
    parents = []
    for level in range(1, MAX_PUBLISHED_LEVEL):
        par = np.zeros(costs[level - 1].shape[0], dtype=np.int64)
        par[node[level - 1]] = node[level]
        parents.append(par)
    return WindowTree(n, qis, node, tuple(parents), tuple(costs), tuple(labels))


def _minplus(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``out[s] = min_i a[i] + b[s - i]`` and the minimizing ``i`` (vectorized, no Python loop)."""
    la, lb = a.shape[0], b.shape[0]
    if la == 1:
        return a[0] + b, np.zeros(lb, dtype=np.int64)
    if lb == 1:
        return a + b[0], np.arange(la, dtype=np.int64)
    pad = np.full(la - 1, _INF)
    windows = sliding_window_view(np.concatenate((pad, b, pad)), la)  # [s, j] = b[s + j - (la - 1)]
    sums = windows + a[::-1]
    j = np.argmin(sums, axis=1)
    return sums[np.arange(sums.shape[0]), j], (la - 1 - j).astype(np.int64)


@dataclass
class _Node:
    level: int
    code: int
    entering: list[int]  # patient indices entering the tree at this node
    children: list[_Node]
    steps: list[np.ndarray]  # argmin arrays of the convolution steps, one per child
    choice: np.ndarray  # per m: total t available at v (t - m stay in the class at v)
    f: np.ndarray
    m: int = 0  # patients passed up (set by the backtracking)


def tree_dp(
    tree: WindowTree,
    members: np.ndarray,
    entry: np.ndarray,
    k: int,
    supp_cost: float,
    rank: np.ndarray,
    free: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Optimal levels (1..9) of the patients ``members`` (indices into the tree).

    ``entry[p]`` = the level at which patient p enters the tree (1 for a newcomer, its anchor level
    for an anchored patient: it can be placed there or at any ancestor, or suppressed).
    ``free[L-1][code]`` = True: a class at that node already holds >= k other patients, so any number
    may join. ``rank`` orders who stays in a class at v when only some of v's pool stay (lower rank
    stays; everybody else is passed up): a tie-break, costs do not depend on it.
    """
    levels = np.full(tree.n, SUPPRESSED_LEVEL, dtype=np.int64)
    members = np.asarray(members, dtype=np.int64)
    if members.size == 0:
        return levels[members]
    by_level: list[dict[int, _Node]] = []
    for level in range(1, MAX_PUBLISHED_LEVEL + 1):
        nodes: dict[int, _Node] = {}
        here = members[entry[members] == level]
        codes = tree.node[level - 1][here]
        order = np.argsort(codes, kind="stable")
        for p, c in zip(here[order].tolist(), codes[order].tolist(), strict=True):
            nd = nodes.get(c)
            if nd is None:
                nd = nodes[c] = _Node(level, c, [], [], [], np.zeros(0, np.int64), np.zeros(0))
            nd.entering.append(p)
        if level > 1:
            par = tree.parent[level - 2]
            for child in sorted(by_level[-1].values(), key=lambda x: x.code):
                pc = int(par[child.code])
                nd = nodes.get(pc)
                if nd is None:
                    nd = nodes[pc] = _Node(level, pc, [], [], [], np.zeros(0, np.int64), np.zeros(0))
                nd.children.append(child)
        cap = (SUPPRESSED_LEVEL - level) * (k - 1)
        cost = tree.cost[level - 1]
        free_here = free[level - 1] if free is not None else None
        for code in sorted(nodes):
            nd = nodes[code]
            need = 1 if free_here is not None and bool(free_here[code]) else k
            _solve_node(nd, float(cost[code]), need, cap)
        by_level.append(nodes)

    # Root: suppress m patients of each level-8 node at BIG each.
    tops = [by_level[-1][c] for c in sorted(by_level[-1])]
    for nd in tops:
        nd.m = int(np.argmin(nd.f + supp_cost * np.arange(nd.f.shape[0])))
    # Top-down: how many each child passes up.
    for nodes in reversed(by_level):
        for code in sorted(nodes):
            nd = nodes[code]
            t = int(nd.choice[nd.m])
            s = t - len(nd.entering)
            for child, arg in zip(reversed(nd.children), reversed(nd.steps), strict=True):
                i = int(arg[s])
                child.m = s - i
                s = i
    # Bottom-up: which patients stay (lowest rank), the rest move on.
    passed: dict[int, list[int]] = {}
    for nodes in by_level:
        nxt: dict[int, list[int]] = {}
        for code in sorted(nodes):
            nd = nodes[code]
            pool = list(nd.entering)
            for child in nd.children:
                pool.extend(passed[id(child)])
            pool.sort(key=lambda p: int(rank[p]))
            stay = len(pool) - nd.m
            for p in pool[:stay]:
                levels[p] = nd.level
            nxt[id(nd)] = pool[stay:]
        passed = nxt
    return levels[members]


def _solve_node(nd: _Node, c: float, need: int, cap: int) -> None:
    """Fill ``nd.f`` / ``nd.choice`` from the children's ``f`` (see the module docstring)."""
    if not nd.children:  # a leaf (most nodes): t = e always, the class at v is e - m
        e = len(nd.entering)
        nd.f = np.array([(e - m) * c if e - m == 0 or e - m >= need else _INF for m in range(min(cap, e) + 1)])
        nd.choice = np.full(nd.f.shape[0], e, dtype=np.int64)
        return
    acc = np.zeros(1)
    for child in nd.children:
        acc, arg = _minplus(acc, child.f)
        nd.steps.append(arg)
    off = len(nd.entering)  # g(t) = acc[t - off]
    if acc.shape[0] <= _SMALL:
        _finish_small(nd, acc.tolist(), off, c, need, cap)
        return
    t_max = off + acc.shape[0] - 1
    m = np.arange(min(cap, t_max) + 1)
    # Nobody stays at v: t = m.
    f = np.full(m.shape[0], _INF)
    choice = m.copy()
    ok = m >= off
    f[ok] = acc[m[ok] - off]
    # A class of t - m >= need stays at v: min over t >= m + need of g(t) + (t - m) c.
    t_all = np.arange(off, t_max + 1)
    h = acc + t_all * c
    # Suffix minimum with its position (first minimum from the right keeps larger classes low).
    rev = h[::-1]
    run = np.minimum.accumulate(rev)
    is_new = np.concatenate(([True], rev[1:] < run[:-1]))
    pos_rev = np.maximum.accumulate(np.where(is_new, np.arange(rev.shape[0]), 0))
    suffix_min = run[::-1]
    suffix_arg = (rev.shape[0] - 1 - pos_rev)[::-1] + off  # t of the minimum
    t0 = np.maximum(m + need, off)
    has = t0 <= t_max
    stay_val = np.full(m.shape[0], _INF)
    stay_val[has] = suffix_min[t0[has] - off] - m[has] * c
    better = stay_val < f
    f = np.where(better, stay_val, f)
    choice[has & better] = suffix_arg[t0[has & better] - off]
    nd.f = f
    nd.choice = choice


_SMALL = 48  # below this many t values plain Python beats a dozen small numpy calls


def _finish_small(nd: _Node, g: list[float], off: int, c: float, need: int, cap: int) -> None:
    """The second half of ``_solve_node`` in plain Python (same arithmetic, same tie-breaks)."""
    t_max = off + len(g) - 1
    suffix_min = [0.0] * len(g)
    suffix_arg = [0] * len(g)
    best, best_t = _INF, t_max
    for j in range(len(g) - 1, -1, -1):
        h = g[j] + (off + j) * c
        if h < best:
            best, best_t = h, off + j
        suffix_min[j] = best
        suffix_arg[j] = best_t
    f: list[float] = []
    choice: list[int] = []
    for m in range(min(cap, t_max) + 1):
        val = g[m - off] if m >= off else _INF
        t = m
        t0 = max(m + need, off)
        if t0 <= t_max:
            stay = suffix_min[t0 - off] - m * c
            if stay < val:
                val, t = stay, suffix_arg[t0 - off]
        f.append(val)
        choice.append(t)
    nd.f = np.array(f)
    nd.choice = np.array(choice, dtype=np.int64)


def plan_levels(
    tree: WindowTree,
    k: int,
    anchor_level: np.ndarray,
    eligible: np.ndarray,
    supp_cost: float,
    rank: np.ndarray | None = None,
) -> np.ndarray:
    """Levels 1..9 of every patient under the anchor rules (docs/privacy.md, section 5).

    ``anchor_level[p]`` = 0 for a newcomer, else the level of its anchor (the anchor node is the
    patient's node at that level: anchored patients' QIs are the stored anchor QIs). Newcomers with
    ``eligible`` False may only be published in a class of >= k such newcomers (phase 1, a DP over
    them alone); everybody else is planned in phase 2, where the nodes used in phase 1 accept any
    number. Without history everybody is an ineligible newcomer and phase 1 is the exact optimum.
    """
    n = tree.n
    anchor_level = np.asarray(anchor_level, dtype=np.int64)
    if rank is None:
        # Newcomers stay low first (their anchor is fixed now), anchored patients are passed up first.
        rank = np.lexsort((np.arange(n), anchor_level > 0))
        rank = np.argsort(rank)
    newcomer = anchor_level == 0
    inel = newcomer & ~np.asarray(eligible, dtype=bool)
    entry = np.where(newcomer, 1, anchor_level)
    levels = np.full(n, SUPPRESSED_LEVEL, dtype=np.int64)
    phase1 = np.flatnonzero(inel)
    levels[phase1] = tree_dp(tree, phase1, entry, k, supp_cost, rank)
    free = [np.zeros(tree.n_nodes(lv), dtype=bool) for lv in range(1, MAX_PUBLISHED_LEVEL + 1)]
    for lv in range(1, MAX_PUBLISHED_LEVEL + 1):
        free[lv - 1][tree.node[lv - 1][phase1[levels[phase1] == lv]]] = True
    phase2 = np.flatnonzero(~inel)
    levels[phase2] = tree_dp(tree, phase2, entry, k, supp_cost, rank, free)
    return levels


def repair_l_diversity(tree: WindowTree, levels: np.ndarray, sensitive_code: np.ndarray, l_diversity: int) -> None:
    """Move every class with fewer than ``l`` distinct sensitive values (codes >= 0) to its parent
    (merging with the class there), level by level; what fails at level 8 is suppressed. In place.
    Classes only merge, so a class keeps >= k patients (and >= k newcomers of phase 1)."""
    if l_diversity <= 0:
        return
    for level in range(1, MAX_PUBLISHED_LEVEL + 1):
        idx = np.flatnonzero(levels == level)
        if idx.size == 0:
            continue
        codes = tree.node[level - 1][idx]
        sc = sensitive_code[idx]
        has = sc >= 0
        width = int(sensitive_code.max()) + 2 if sensitive_code.size else 1
        pairs = np.unique(codes[has] * width + sc[has])
        diversity = np.bincount(pairs // width, minlength=tree.n_nodes(level))
        bad = diversity[codes] < l_diversity
        levels[idx[bad]] = level + 1 if level < MAX_PUBLISHED_LEVEL else SUPPRESSED_LEVEL
