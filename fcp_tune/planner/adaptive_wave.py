"""One wave of the adaptive planner, for one *pool degree* ``g``: rows + a data-parallel pool.

Within a wave, sequences whose minimum degree exceeds ``g`` (and, for ``g = 1``, short
sequences costlier than the wave's ideal per-rank time) are *rows*: each may take any
degree from its minimum up. All other sequences form a *pool* run by groups of about
``g`` ranks, dealt costliest first to the least-loaded group with room. ``g = 1`` is pure
data parallelism for short sequences (no communication); larger ``g`` pools the memory of
several ranks, which balances compute better when the wave's memory is nearly full.

The solver (:mod:`~fcp_tune.planner.solve`) splits the wave's ranks between the rows and
the pool; the pool with ``r`` ranks is estimated at ``max(t(pool, g) / (r // g),
t(longest, g))`` (its work spread over ``r // g`` groups). Memory for a pool group of
``s >= 2`` ranks uses the sufficient rule ``sum(L + 2 s) <= s (budget + 1)`` (a rank of
a zigzag group holds fewer than ``L/s + 2`` tokens of a sequence), so no exact check is
needed while dealing.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from fcp_tune.planner.cost import CostFn, cost_table
from fcp_tune.planner.packing import fits, pack_class
from fcp_tune.planner.solve import fill_spare, least_makespan_extra
from fcp_tune.planner.table import estimate_table
from fcp_tune.planner.vocab import allowed_sizes_mask, round_degree
from fcp_tune.policy import min_degree_for
from fcp_tune.schemes.layout import rule_capacity, rule_sizes, surely_fits

Groups = list[tuple[int, list[int]]]


@dataclass(frozen=True, eq=False)
class Draft:
    """A wave's ranks split between rows and a pool of degree ``g``, before dealing the pool.

    ``r0`` is the pool's minimum ranks: a token lower bound (``exact=False``) or ``g`` times
    the best-fit-decreasing bin count (``exact=True``, always realisable). ``estimate`` is
    the solver's makespan, optimistic for the pool (perfect balance), so a draft whose
    estimate is no better than a realised plan can be skipped.
    """

    g: int
    rows: list[list[int]]
    row_m: np.ndarray
    pool: list[int]
    r0: int
    exact: bool
    extra: np.ndarray
    estimate: float
    rows_in: list[list[int]]  # the wave's long bins, as given (to redo the draft exactly)
    row_min: list[int]


def draft(
    g: int,
    rows_in: list[list[int]],
    row_min: list[int],
    short: list[int],
    c1: np.ndarray,
    lengths: np.ndarray,
    n: int,
    budget: int,
    cost: CostFn,
    exact: bool = False,
) -> Draft | None:
    """Split one wave's ranks for pool degree ``g``; ``None`` if the minimums exceed ``n``.

    ``rows_in``/``row_min``: the wave's bins of minimum degree >= 2 and those degrees;
    ``short``: its sequences of minimum degree 1, ``c1`` their times at degree 1.
    """
    rows = [b for b, d in zip(rows_in, row_min) if d > g]
    row_m = [d for d in row_min if d > g]
    merged = [s for b, d in zip(rows_in, row_min) if d <= g for s in b]
    short_arr = np.asarray(short, dtype=np.int64)
    if g == 1:
        long_work = np.zeros(0)
        if rows:
            long_work = estimate_table(cost, [lengths[b] for b in rows], np.array(row_m)[:, None])[:, 0]
        ideal = (float(c1.sum()) + float((long_work * np.array(row_m)).sum())) / n
        big = short_arr[c1 > ideal].tolist()
        rows = rows + [[s] for s in big]
        row_m = row_m + [1] * len(big)
        pool_arr = np.concatenate([np.asarray(merged, dtype=np.int64), short_arr[c1 <= ideal]])
    else:
        pool_arr = np.concatenate([np.asarray(merged, dtype=np.int64), short_arr])
    sizes, capacity = _pool_sizes(lengths, g, budget)
    too_long = sizes[pool_arr] > capacity  # too long for the sufficient rule: rows of their own
    if too_long.any():
        misfits = pool_arr[too_long].tolist()
        pool_arr = pool_arr[~too_long]
        rows = rows + [[s] for s in misfits]
        row_m = row_m + [round_degree(cost, min_degree_for(int(lengths[s]), budget)) for s in misfits]
    pool_arr = np.sort(pool_arr)
    pool = pool_arr.tolist()
    if not pool:
        r0 = 0
    elif exact:
        r0 = g * len(pack_class(pool, sizes, 1, capacity))
    else:
        r0 = g * -(-int(sizes[pool_arr].sum()) // capacity)
    m = np.asarray(row_m, dtype=np.int64)
    slack = n - int(m.sum()) - r0
    if slack < 0:
        return None
    table = np.empty((len(rows) + (1 if pool else 0), slack + 1))
    if rows:
        table[: len(rows)] = row_table(rows, m, slack, lengths, budget, cost)
    if pool:
        pool_len = lengths[pool_arr]
        pair = [pool_len, pool_len[[int(np.argmax(pool_len))]]]
        if getattr(cost, "group_time_table", None) is None:
            pair[0] = coarse(pool_len)  # few distinct lengths: cheap for per-length memoising costs
        at_g = estimate_table(cost, pair, np.array([[g], [g]]))[:, 0]  # optimistic anyway: the table's estimate
        groups_at = (r0 + np.arange(slack + 1)) // g
        table[-1] = np.maximum(at_g[0] / groups_at, at_g[1])
    extra = fill_spare(table, least_makespan_extra(table, slack), slack)
    estimate = float(table[np.arange(len(table)), extra].max()) if len(table) else 0.0
    return Draft(g, rows, m, pool, r0, exact, extra, estimate, rows_in, row_min)


def coarse(lengths: np.ndarray, steps_per_octave: int = 8) -> np.ndarray:
    """Lengths rounded to a geometric grid (``2^(1/8)`` apart, within ~4.5 %), for estimates only."""
    grid = np.round(np.log2(np.maximum(lengths, 1)) * steps_per_octave) / steps_per_octave
    return np.maximum(np.round(np.exp2(grid)), 1).astype(np.int64)


def _pool_sizes(lengths: np.ndarray, g: int, budget: int) -> tuple[np.ndarray, int]:
    """Per-sequence sizes and per-group capacity of the pool's memory rule."""
    return rule_sizes(lengths, g), rule_capacity(g, budget)


def realise(
    d: Draft,
    short: list[int],
    c1: np.ndarray,
    lengths: np.ndarray,
    n: int,
    budget: int,
    cost: CostFn,
) -> Groups | None:
    """Deal the draft's pool onto its ranks: groups ``(size, seq_ids)``, or ``None``.

    Costliest first to the least-loaded group; if memory is too tight for that, tokens
    first; if that fails too, the draft is redone with the exact bin count and, at worst,
    the pool runs as its best-fit-decreasing bins.
    """
    out: Groups = [(int(d.row_m[i] + d.extra[i]), d.rows[i]) for i in range(len(d.rows))]
    if not d.pool:
        return out
    ranks = d.r0 + int(d.extra[-1])
    weights = _weights(d.pool, short, c1, lengths, cost)
    parts = deal(d.pool, weights, lengths, ranks, d.g, budget)
    if parts is None:  # memory is tight: balancing tokens packs better than balancing time
        parts = deal(d.pool, lengths[d.pool].astype(np.float64), lengths, ranks, d.g, budget)
    if parts is None:
        if not d.exact:
            redo = draft(d.g, d.rows_in, d.row_min, short, c1, lengths, n, budget, cost, exact=True)
            return None if redo is None else realise(redo, short, c1, lengths, n, budget, cost)
        sizes, capacity = _pool_sizes(lengths, d.g, budget)
        parts = [(d.g, b) for b in pack_class(d.pool, sizes, 1, capacity)]
    return out + parts


def _weights(
    pool: list[int], short: list[int], c1: np.ndarray, lengths: np.ndarray, cost: CostFn
) -> np.ndarray:
    """Time at degree 1 of each pool sequence (known for short ones, computed for the rest)."""
    known = dict(zip(short, c1.tolist()))
    missing = [s for s in pool if s not in known]
    if missing:
        ones = np.ones((len(missing), 1), dtype=np.int64)
        t = cost_table(cost, [lengths[[s]] for s in missing], ones)[:, 0]
        known.update(zip(missing, t.tolist()))
    return np.array([known[s] for s in pool])


def deal(
    ids: list[int], weights: np.ndarray, lengths: np.ndarray, ranks: int, g: int, budget: int
) -> Groups | None:
    """Heaviest first (by ``weights``) to the least-loaded (per rank) of ``ranks // g`` groups with room.

    Group sizes are ``ranks // q`` or one more (``q`` groups, at most one per sequence).
    Returns ``None`` when some sequence finds no group with room; empty groups are dropped.
    """
    q = max(1, min(ranks // g, len(ids)))
    sizes = [ranks // q + (1 if j < ranks % q else 0) for j in range(q)]
    room = [rule_capacity(s, budget) for s in sizes]
    pad = [rule_sizes(0, s) for s in sizes]  # what the rule adds to every sequence
    used = [0] * q
    loads = [0.0] * q
    parts: list[list[int]] = [[] for _ in range(q)]
    heap = [(0.0, p) for p in range(q)]
    parked: list[tuple[int, int]] = []  # (-room left, group): groups too full for the last sequence
    idx = np.asarray(ids, dtype=np.int64)
    for j in np.lexsort((idx, -weights)).tolist():
        length = int(lengths[ids[j]])
        while parked and -parked[0][0] >= length:
            p = heapq.heappop(parked)[1]
            heapq.heappush(heap, (loads[p] / sizes[p], p))
        while heap:
            p = heap[0][1]
            left = room[p] - used[p] - pad[p]
            if left >= length:
                break
            heapq.heappop(heap)
            heapq.heappush(parked, (-left, p))
        if not heap:
            return None
        _, p = heapq.heappop(heap)
        parts[p].append(ids[j])
        used[p] += length + pad[p]
        loads[p] += float(weights[j])
        heapq.heappush(heap, (loads[p] / sizes[p], p))
    return [(sizes[p], parts[p]) for p in range(q) if parts[p]]


def row_table(
    rows: list[list[int]], m: np.ndarray, slack: int, lengths: np.ndarray, budget: int, cost: CostFn,
    limit: int | None = None,
) -> np.ndarray:
    """``table[i, s]``: time of row ``i`` at ``m[i] + s`` ranks; ``inf`` where memory fails
    (and above ``limit`` ranks, when given).

    Cost functions without ``group_time_table`` are asked about a thinned set of degrees
    (the first 8 extra ranks, then steps of ~25 %); the others are ``inf`` (never chosen).
    A cost restricted to a vocabulary (:func:`~fcp_tune.planner.vocab.restrict`) is asked
    about exactly the vocabulary's sizes (few, so no thinning is needed).
    """
    steps = np.arange(slack + 1, dtype=np.int64)
    allowed = allowed_sizes_mask(cost, m[:, None] + steps[None, :])
    if allowed is None and getattr(cost, "group_time_table", None) is None:
        keep = np.zeros(slack + 1, dtype=bool)
        keep[: min(slack, 8) + 1] = True
        keep[np.unique(np.round(1.25 ** np.arange(60)).astype(np.int64).clip(0, slack))] = True
        steps = np.where(keep, steps, -1)
    degrees = np.where(steps >= 0, m[:, None] + steps[None, :], 0)
    if limit is not None:
        degrees = np.where(degrees <= limit, degrees, 0)
    if allowed is not None:
        degrees = np.where(allowed, degrees, 0)
    row_lengths = [lengths[b] for b in rows]
    table = estimate_table(cost, row_lengths, degrees)  # the solver's search; candidates are re-costed exactly
    # A row of <= budget tokens fits any degree; bigger ones may need the exact check.
    totals = np.array([int(x.sum()) for x in row_lengths], dtype=np.int64)
    counts = np.array([len(b) for b in rows], dtype=np.int64)
    for i in np.nonzero(totals > budget)[0].tolist():
        d = degrees[i]
        unsure = (d > m[i]) & ~surely_fits(totals[i], counts[i], d, budget)
        for j in np.nonzero(unsure)[0].tolist():
            if not fits(row_lengths[i], int(d[j]), budget):
                table[i, j] = np.inf
    return table
