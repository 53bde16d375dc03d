"""Tabulated group times: a fast ``CostFn`` built from another cost function's own answers.

The adaptive planner asks a calibrated cost model (:class:`fcp_tune.costmodel.CostModel`)
about thousands of (bin, degree) pairs per batch, most of them single sequences or bins
at degree 1, with lengths it has not seen before. :class:`TabulatedCost` answers those
from a table filled lazily by the wrapped cost itself, so it follows whatever that cost
computes (memory, overlap or recompute pricing included) without restating a formula:

- per degree ``d``, ``inner.group_time([L], d)`` on a length grid: every integer up to
  :data:`EXACT_UP_TO`, then geometric, :data:`STEPS_PER_OCTAVE` points per octave
  (``2^(1/64)`` apart); a length between grid points is interpolated linearly, within
  0.5 % of the direct value (``tests/test_cost_table.py`` checks it over lengths and degrees).
  Below :data:`DIRECT_TOKENS_PER_RANK` tokens per rank (``L < 512 d``) the direct value is
  used instead: there a rank's share changes by whole tokens every ``2 d`` of length (the
  zigzag chunks), a step of ``1 / (L / d)`` that interpolation would smear by up to 2-3 %;
- a bin of several sequences is additive in their single-sequence times less the group's
  fixed part ``F_d = 2 t([1]) - t([1, 1])`` counted once (the per-call cost and the
  collectives' latency). That is exact at degree 1 (no communication); at ``d > 1`` a
  group's per-rank maximum and its collectives sized by the busiest rank are not additive,
  so :meth:`TabulatedCost.group_time_table` hands multi-sequence bins at ``d > 1`` to the
  wrapped cost (exact), and only :meth:`TabulatedCost.estimate_table` (for the planner's
  optimistic estimates) uses the additive rule there.

Entries are memoised for the life of the object; :meth:`CostModel.tabulated` keeps one per
cost model, so what repeats between batches (the same degrees, the same grid points) is
computed once per profile, model and world size.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from fcp_tune.planner.cost import CostFn, LimitedCost, cost_table

EXACT_UP_TO = 256  # every length up to this is a grid point (token counts per rank are integers)
STEPS_PER_OCTAVE = 64
FILL_BLOCK = 16  # grid points filled together (one vectorised layout in CostModel._fill)
POSITION_CACHE_UP_TO = 1 << 21  # grid positions of lengths below this are cached (3 arrays, <= 48 MiB)
DIRECT_TOKENS_PER_RANK = 512  # below L = 512 d, single sequences are evaluated directly (memoised by inner)


def grid_length(i: np.ndarray) -> np.ndarray:
    """The length of grid point ``i`` (``i <= EXACT_UP_TO``: ``i`` itself; then geometric)."""
    i = np.asarray(i, dtype=np.float64)
    geo = np.round(EXACT_UP_TO * np.exp2((i - EXACT_UP_TO) / STEPS_PER_OCTAVE))
    return np.where(i <= EXACT_UP_TO, i, geo).astype(np.int64)


def grid_position(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower grid index, upper grid index and linear weight of each length (all >= 1)."""
    x = np.asarray(lengths, dtype=np.float64)
    lo = np.where(x <= EXACT_UP_TO, x, EXACT_UP_TO + np.floor(np.log2(x / EXACT_UP_TO) * STEPS_PER_OCTAVE))
    lo = lo.astype(np.int64)
    a = grid_length(lo)
    lo = np.where(a > x, lo - 1, lo)  # float rounding at a grid point
    a = grid_length(lo)
    hi = np.where(a == x, lo, lo + 1)
    b = grid_length(hi)
    # Rounded geometric points can repeat at the start; step past equal neighbours.
    same = (b == a) & (hi != lo)
    while same.any():
        hi = np.where(same, hi + 1, hi)
        b = grid_length(hi)
        same = (b == a) & (hi != lo)
    w = np.where(hi == lo, 0.0, (x - a) / np.maximum(b - a, 1))
    return lo, hi, w


class TabulatedCost:
    """``inner``'s group times from lazily filled per-degree length tables (see the module docstring).

    Implements ``group_time`` (single sequences and degree 1 from the table, anything else
    from ``inner``) and the vectorised ``group_time_table`` the planner's solvers use.
    """

    def __init__(self, inner: CostFn) -> None:
        self.inner = inner
        self._cols: dict[int, np.ndarray] = {}  # degree -> times on the grid (nan: not filled yet)
        self._fixed: dict[int, float] = {}  # degree -> the group's fixed part F_d
        # grid_position of every length below self._pos[0].size, computed once (lengths repeat across batches)
        self._pos: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.zeros(0, np.int64),) * 2 + (np.zeros(0),)

    def _positions(self, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`grid_position` of ``lengths``, looked up in a per-length cache grown by doubling."""
        top = int(lengths.max(initial=0)) + 1
        if top > POSITION_CACHE_UP_TO:  # a bounded cache: longer lengths are positioned directly
            return grid_position(lengths)
        if top > self._pos[0].size:
            size = min(max(top, 2 * self._pos[0].size, 1024), POSITION_CACHE_UP_TO)
            lo, hi, w = grid_position(np.arange(1, size))
            self._pos = (np.concatenate([[0], lo]), np.concatenate([[0], hi]), np.concatenate([[0.0], w]))
        lo, hi, w = self._pos
        return lo[lengths], hi[lengths], w[lengths]

    # ------------------------------------------------------------------ table
    def _column(self, degree: int, need: np.ndarray) -> np.ndarray:
        """Degree ``degree``'s grid column with at least the entries ``need`` filled."""
        col = self._cols.get(degree)
        top = (int(need.max(initial=0)) // FILL_BLOCK + 1) * FILL_BLOCK
        if col is None or col.size < top:
            grown = np.full(max(top, 2 * (0 if col is None else col.size)), np.nan)
            if col is not None:
                grown[: col.size] = col
            col = self._cols[degree] = grown
        todo = need[np.isnan(col[need])]
        if todo.size:  # fill whole blocks of grid points: later batches ask about their neighbours
            todo = (np.unique(todo // FILL_BLOCK)[:, None] * FILL_BLOCK + np.arange(FILL_BLOCK)[None, :]).ravel()
            todo = todo[(todo >= 1) & (todo < col.size)]
            todo = todo[np.isnan(col[todo])]
            lens = grid_length(todo)
            fill = getattr(self.inner, "_fill", None)
            if fill is not None:
                fill(lens.tolist(), degree)  # CostModel: one vectorised layout for all of them
            col[todo] = [float(self.inner.group_time([int(x)], degree)) for x in lens]
        return col

    def fixed(self, degree: int) -> float:
        """The part of a group's time paid once however many sequences it holds: ``2 t([1]) - t([1, 1])``."""
        f = self._fixed.get(degree)
        if f is None:
            one = float(self.inner.group_time([1], degree))
            f = 2.0 * one - float(self.inner.group_time([1, 1], degree)) if math.isfinite(one) else 0.0
            self._fixed[degree] = f
        return f

    def single(self, lengths: np.ndarray, degree: int) -> np.ndarray:
        """Interpolated ``group_time([L], degree)`` for every length."""
        lo, hi, w = grid_position(lengths)
        col = self._column(int(degree), np.concatenate([lo, hi]))
        return (1.0 - w) * col[lo] + w * col[hi]

    # ------------------------------------------------------------------ CostFn
    def group_time(self, seqlens: Sequence[int], degree: int) -> float:
        lens = np.asarray([int(x) for x in seqlens if int(x) > 0], dtype=np.int64)
        if lens.size == 0:
            return float(self.inner.group_time([], degree))
        if int(degree) > 1 and (lens.size > 1 or lens[0] < DIRECT_TOKENS_PER_RANK * int(degree)):
            return float(self.inner.group_time(lens.tolist(), degree))
        return float(self._additive([lens], np.array([[int(degree)]]), exact=True)[0, 0])

    def group_time_table(self, bins: Sequence[Sequence[int]], degrees: np.ndarray) -> np.ndarray:
        """``out[k, j] = group_time(bins[k], degrees[k, j])`` (table where exact enough, else ``inner``)."""
        return self._additive(bins, np.asarray(degrees, dtype=np.int64), exact=True)

    def estimate_table(self, bins: Sequence[Sequence[int]], degrees: np.ndarray) -> np.ndarray:
        """Like :meth:`group_time_table`, from the table alone: additive for every bin (an estimate at
        ``d > 1``) and interpolated at any number of tokens per rank (a few % off below 512)."""
        return self._additive(bins, np.asarray(degrees, dtype=np.int64), exact=False)

    def _additive(self, bins: Sequence[Sequence[int]], degrees: np.ndarray, exact: bool) -> np.ndarray:
        arrays = [np.asarray(b, dtype=np.int64).ravel() for b in bins]
        counts = np.array([a.size for a in arrays], dtype=np.int64)
        flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        if (flat < 1).any():
            raise ValueError("sequence lengths must be >= 1")
        out = np.zeros(degrees.shape)
        k = len(arrays)
        if k == 0:
            return out
        lo, hi, w = self._positions(flat) if flat.size else (flat, flat, np.zeros(0))
        owner = np.repeat(np.arange(k), counts)
        needed = np.unique(np.concatenate([lo, hi]))
        multi = counts > 1
        flat_max = np.zeros(k, dtype=np.int64)  # a single sequence's length (bins of one)
        single = np.nonzero(counts == 1)[0]
        flat_max[single] = flat[np.cumsum(counts)[single] - 1]
        slot = np.zeros(k, dtype=np.int64)  # a bin's row in this degree's values
        for d in np.unique(degrees).tolist():
            at = degrees == d
            rows = np.nonzero(at.any(axis=1))[0]
            col = self._column(int(d), needed)
            if not np.isfinite(col[needed]).all():  # a degree the wrapped cost rules out (inf for every length)
                out[at] = np.inf
                continue
            vals = np.bincount(owner, (1.0 - w) * col[lo] + w * col[hi], minlength=k)[rows]
            short = np.nonzero((counts[rows] == 1) & (flat_max[rows] < DIRECT_TOKENS_PER_RANK * d) & (d > 1))[0]
            if exact and short.size:  # few tokens per rank: whole-token steps, ask the wrapped cost
                fill = getattr(self.inner, "_fill", None)
                if fill is not None:
                    fill([int(flat_max[rows[r]]) for r in short.tolist()], int(d))
                for r in short.tolist():
                    vals[r] = float(self.inner.group_time([int(flat_max[rows[r]])], int(d)))
            if multi[rows].any():
                vals = vals - np.where(multi[rows], (counts[rows] - 1) * self.fixed(int(d)), 0.0)
                if exact and d > 1:  # not additive: ask the wrapped cost
                    for r in np.nonzero(multi[rows])[0].tolist():
                        vals[r] = float(self.inner.group_time(arrays[rows[r]].tolist(), int(d)))
            slot[rows] = np.arange(rows.size)
            r_idx, c_idx = np.nonzero(at)
            out[r_idx, c_idx] = vals[slot[r_idx]]
        return out


def tabulated(cost: CostFn) -> CostFn:
    """The fast form of ``cost`` for planning: its :meth:`tabulated` table when it offers one
    (:class:`fcp_tune.costmodel.CostModel`), kept inside any size limit; else ``cost`` itself."""
    if isinstance(cost, LimitedCost):
        inner = tabulated(cost.inner)
        return cost if inner is cost.inner else LimitedCost(inner, cost.sizes)
    make = getattr(cost, "tabulated", None)
    return make() if make is not None else cost


def estimate_table(cost: CostFn, bins: Sequence[Sequence[int]], degrees: np.ndarray) -> np.ndarray:
    """Like :func:`~fcp_tune.planner.cost.cost_table`, from a tabulated cost's table alone.

    For the planner's searches and bounds (which degree a row might take, what a pool
    would cost if perfectly balanced); the candidates they produce are then compared with
    :func:`~fcp_tune.planner.cost.cost_table`. A size limit (:class:`LimitedCost`) still
    applies; a cost without a table answers exactly.
    """
    degrees = np.asarray(degrees)
    inner = cost.inner if isinstance(cost, LimitedCost) else cost
    est = getattr(inner, "estimate_table", None)
    if est is None:
        return cost_table(cost, bins, degrees)
    out = est(bins, np.maximum(degrees, 1))
    ok = degrees > 0
    if isinstance(cost, LimitedCost):
        ok &= np.isin(degrees, cost.sizes, kind="table")  # small integers: a lookup, not a sort
    return np.where(ok, out, np.inf)
