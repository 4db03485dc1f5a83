"""Generalization hierarchies for the quasi-identifiers and the ECG sample precision.

The CSV has a ``level`` column (rows 1..9) and one column per attribute. Each cell is a rule:

* ``keep``      exact value
* ``band:W``    integer bands of width W aligned at 0, published as ``50-54``
* ``prefix:N``  keep the first N characters, mask the rest with ``*`` (``101**``)
* ``round:P``   round to precision P (only for ``ecg_mv``, which is data, not a QI)
* ``*``         fully suppressed

Every level's partition must be nested in the next level's (see ``docs/privacy.md``): that makes the
labels a patient receives in different windows comparable, so intersecting them never reveals more
than the finest label, which was itself published in a class of >= k patients.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np

LEVELS = tuple(range(1, 10))
SUPPRESSED_LEVEL = 9
ECG_COLUMN = "ecg_mv"
STAR = "*"
DEFAULT_HIERARCHY_PATH = Path(__file__).with_name("ecg_hierarchy.csv")


class HierarchyError(ValueError):
    """Invalid hierarchy file; the message names the file, the row (level) and the column."""


@dataclass(frozen=True)
class Rule:
    """One generalization rule: ``kind`` in keep/band/prefix/round/star and its parameter."""

    kind: str
    param: float = 0.0
    text: str = ""

    @property
    def width(self) -> int:
        return int(self.param)

    def __str__(self) -> str:
        return self.text or self.kind


def parse_rule(text: str) -> Rule:
    """Parse one cell; raises ``ValueError`` with a short reason (the loader adds the location)."""
    t = text.strip()
    if t == STAR:
        return Rule("star", 0.0, t)
    if t == "keep":
        return Rule("keep", 0.0, t)
    kind, sep, arg = t.partition(":")
    if not sep or kind not in ("band", "prefix", "round"):
        raise ValueError(f"unknown rule {t!r} (expected keep, band:W, prefix:N, round:P or *)")
    if kind in ("band", "prefix"):
        try:
            n = int(arg)
        except ValueError:
            raise ValueError(f"bad number {arg!r} in rule {t!r} (expected an integer)") from None
        if kind == "band" and n < 1:
            raise ValueError(f"bad number {arg!r} in rule {t!r} (band width must be >= 1)")
        if kind == "prefix" and n < 0:
            raise ValueError(f"bad number {arg!r} in rule {t!r} (prefix length must be >= 0)")
        return Rule(kind, float(n), t)
    try:
        p = float(arg)
    except ValueError:
        raise ValueError(f"bad number {arg!r} in rule {t!r} (expected a decimal)") from None
    if not math.isfinite(p) or p <= 0:
        raise ValueError(f"bad number {arg!r} in rule {t!r} (precision must be > 0)")
    return Rule("round", p, t)


def _nests(prev: Rule, nxt: Rule) -> str | None:
    """Return why ``nxt`` is not at least as coarse as ``prev`` (None if it nests)."""
    if nxt.kind == "star" or prev.kind == "keep":
        return None
    if prev.kind == "star":
        return f"'{nxt}' follows '*' (a suppressed attribute cannot be un-suppressed)"
    if prev.kind == "band":
        if nxt.kind == "band" and nxt.width % prev.width == 0:
            return None
        if nxt.kind == "band":
            return f"band width {nxt.width} is not a multiple of the previous width {prev.width}"
        return f"'{nxt}' cannot follow '{prev}'"
    if prev.kind == "prefix":
        if nxt.kind == "prefix" and nxt.param <= prev.param:
            return None
        if nxt.kind == "prefix":
            return f"prefix length grows from {prev.width} to {nxt.width}"
        return f"'{nxt}' cannot follow '{prev}'"
    # round: precision may only stay or grow
    if nxt.kind == "round" and nxt.param >= prev.param:
        return None
    if nxt.kind == "round":
        return f"rounding precision shrinks from {prev.param:g} to {nxt.param:g}"
    return f"'{nxt}' cannot follow '{prev}'"


def _decimals(p: float) -> int:
    """Number of decimal places of a precision such as 0.005 (-> 3), used to strip float noise."""
    exp = Decimal(repr(p)).normalize().as_tuple().exponent
    return max(0, -int(exp)) if isinstance(exp, int) else 0


@dataclass
class Hierarchy:
    """Validated hierarchy: rules per attribute and level, plus vectorized generalization."""

    path: str
    rules: dict[str, tuple[Rule, ...]]  # attribute -> rules for levels 1..9 (index level - 1)

    @property
    def quasi_identifiers(self) -> tuple[str, ...]:
        """All configured attributes except ``ecg_mv`` (in file order)."""
        return tuple(a for a in self.rules if a != ECG_COLUMN)

    def rule(self, attribute: str, level: int) -> Rule:
        if level not in LEVELS:
            raise ValueError(f"level must be in 1..9, got {level}")
        return self.rules[attribute][level - 1]

    # -- ECG sample precision -------------------------------------------------------------
    def ecg_precision(self, level: int) -> float:
        """Rounding precision of ``ecg_mv`` at ``level``: 0.0 = exact, ``inf`` = suppressed
        (level 9 values are imputed, never rounded real samples)."""
        if ECG_COLUMN not in self.rules:
            return 0.0 if level < SUPPRESSED_LEVEL else math.inf
        r = self.rule(ECG_COLUMN, level)
        if r.kind == "keep":
            return 0.0
        if r.kind == "round":
            return r.param
        return math.inf

    def round_ecg(self, values: np.ndarray, level: int) -> np.ndarray:
        """Round samples to the level's precision (vectorized; exact for ``keep``)."""
        v = np.asarray(values, dtype=np.float64)
        p = self.ecg_precision(level)
        if p == 0.0:
            return v.copy()
        if not math.isfinite(p):
            raise ValueError(f"ecg_mv is suppressed at level {level}; impute instead of rounding")
        inv = 1.0 / p
        if abs(inv - round(inv)) < 1e-9 * inv:
            # p = 1/N (0.005, 0.01, ...): rint(v/p) / N is the correctly rounded decimal
            # (0.015, not 0.015000000000000001), in three in-place passes.
            out = v / p
            np.rint(out, out=out)
            out /= float(round(inv))
        else:
            out = np.round(np.round(v / p) * p, _decimals(p) + 1)  # second round strips float noise
        out += 0.0  # -0.0 -> 0.0 so sinks never print "-0"
        return out

    # -- quasi-identifiers ----------------------------------------------------------------
    def codes(self, attribute: str, values: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(labels, inverse)``: sorted distinct labels and, per value, its label index.

        Integer codes are what grouping needs; ``labels[inverse]`` are the published strings.
        """
        rule = self.rule(attribute, level)
        vals = np.asarray(values)
        n = vals.shape[0]
        if rule.kind == "star":
            return np.array([STAR]), np.zeros(n, dtype=np.intp)
        if rule.kind == "band":
            num = _as_float(vals)
            ok = np.isfinite(num)
            lo = np.where(ok, np.floor(np.where(ok, num, 0.0) / rule.width) * rule.width, np.inf)
            uniq, inv = np.unique(lo, return_inverse=True)
            w = rule.width
            labels = [
                STAR if not math.isfinite(u) else (f"{int(u)}" if w == 1 else f"{int(u)}-{int(u) + w - 1}")
                for u in uniq.tolist()
            ]
            return _relabel(np.array(labels, dtype=object), inv)
        # keep / prefix: work on distinct strings only (few distinct zips/sexes per window).
        strs = _as_str(vals)
        uniq_s, inv = np.unique(strs, return_inverse=True)
        if rule.kind == "keep":
            return uniq_s.astype(object), inv.astype(np.intp)
        n_keep = rule.width
        gen = np.array([s[:n_keep] + STAR * max(0, len(s) - n_keep) for s in uniq_s.tolist()], dtype=object)
        return _relabel(gen, inv)

    def generalize(self, attribute: str, values: np.ndarray, level: int) -> np.ndarray:
        """Generalized string labels (numpy array of ``str``) of ``values`` at ``level``."""
        labels, inv = self.codes(attribute, values, level)
        return labels[inv]


def _as_float(vals: np.ndarray) -> np.ndarray:
    if vals.dtype.kind in "iufb":
        return vals.astype(np.float64)
    out = np.full(vals.shape[0], np.nan)
    for i, v in enumerate(vals.tolist()):  # only for object/str input (rare: ages as strings)
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            pass
    return out


def _as_str(vals: np.ndarray) -> np.ndarray:
    if vals.dtype.kind == "U":
        return vals
    return np.array(["" if v is None else str(v) for v in vals.tolist()], dtype=str)


def _relabel(gen: np.ndarray, inv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge distinct raw values that generalize to the same label into one code."""
    labels, inv2 = np.unique(gen.astype(str), return_inverse=True)
    return labels.astype(object), inv2[inv].astype(np.intp)


def load_hierarchy(path: str | Path = DEFAULT_HIERARCHY_PATH) -> Hierarchy:
    """Load and validate a hierarchy CSV; raises ``HierarchyError`` naming file, row and column."""
    p = Path(path)
    name = str(p)
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise HierarchyError(f"{name}: cannot read hierarchy file: {exc}") from exc
    rows = [r for r in rows if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise HierarchyError(f"{name}: row header, column level: empty file")
    header = [h.strip() for h in rows[0]]
    if not header or header[0] != "level":
        raise HierarchyError(f"{name}: row header, column {header[0] if header else '?'}: first column must be 'level'")
    attrs = header[1:]
    if not attrs:
        raise HierarchyError(f"{name}: row header, column level: no attribute columns")
    seen: set[str] = set()
    for a in attrs:
        if not a or a in seen:
            raise HierarchyError(f"{name}: row header, column {a!r}: empty or duplicate column name")
        seen.add(a)

    by_level: dict[int, list[Rule]] = {}
    for line_no, raw in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in raw]
        where = f"{name}: row {cells[0] if cells else '?'} (line {line_no})"
        if len(cells) != len(header):
            raise HierarchyError(f"{where}, column level: expected {len(header)} cells, got {len(cells)}")
        try:
            level = int(cells[0])
        except ValueError:
            raise HierarchyError(f"{where}, column level: bad number {cells[0]!r}") from None
        if level in by_level:
            raise HierarchyError(f"{where}, column level: duplicate level {level}")
        parsed: list[Rule] = []
        for attr, cell in zip(attrs, cells[1:], strict=True):
            try:
                rule = parse_rule(cell)
            except ValueError as exc:
                raise HierarchyError(f"{name}: row {level}, column {attr}: {exc}") from None
            if attr == ECG_COLUMN and rule.kind in ("band", "prefix"):
                raise HierarchyError(
                    f"{name}: row {level}, column {attr}: '{rule}' not allowed for ecg_mv (use round:P)"
                )
            if attr != ECG_COLUMN and rule.kind == "round":
                raise HierarchyError(f"{name}: row {level}, column {attr}: round:P is only for ecg_mv")
            parsed.append(rule)
        by_level[level] = parsed

    levels = sorted(by_level)
    if levels != list(LEVELS):
        missing = sorted(set(LEVELS) - set(levels))
        extra = sorted(set(levels) - set(LEVELS))
        bad = missing[0] if missing else extra[0]
        raise HierarchyError(
            f"{name}: row {bad}, column level: levels must be contiguous 1..9 (missing {missing}, unexpected {extra})"
        )
    for attr, rule in zip(attrs, by_level[SUPPRESSED_LEVEL], strict=True):
        if rule.kind != "star":
            raise HierarchyError(f"{name}: row 9, column {attr}: level 9 must be '*' (got '{rule}')")
    for j, attr in enumerate(attrs):
        for level in LEVELS[1:]:
            why = _nests(by_level[level - 1][j], by_level[level][j])
            if why:
                raise HierarchyError(f"{name}: row {level}, column {attr}: not nested in row {level - 1}: {why}")
    rules = {attr: tuple(by_level[lv][j] for lv in LEVELS) for j, attr in enumerate(attrs)}
    if not any(a != ECG_COLUMN for a in attrs):
        raise HierarchyError(f"{name}: row header, column level: no quasi-identifier column")
    return Hierarchy(path=name, rules=rules)
