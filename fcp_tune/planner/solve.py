"""Degree assignment for one wave: least makespan of bins sharing ``N`` ranks.

The FCP paper states it as dynamic programming over (bins, ranks):
``DP[i][j] = min over d >= m_i of max(DP[i-1][j-d], t_i(d))``, the least makespan of the
first ``i`` bins on exactly ``j`` ranks, O(K N^2). Because the objective is a maximum,
the optimum has a closed form that needs no table over ``j``: with ``S`` spare ranks
(``N - sum(m_i)``) and ``P[i][s] = min(t_i(m_i .. m_i + s))`` (a prefix minimum, so
non-increasing in ``s``), a makespan ``T`` is reachable iff bin ``i`` can get below ``T``
with ``#{s : P[i][s] > T}`` extra ranks and those counts sum to at most ``S``; i.e. iff
``#{(i, s) : P[i][s] > T} <= S``. The optimum is therefore the ``(S+1)``-th largest entry
of ``P`` (one ``np.partition``, O(K S)), and each bin's degree is ``m_i`` plus its count
of entries above it, the fewest ranks that reach it. This returns exactly the DP's
makespan (the tests check it against the textbook DP) in far less time: at 1024 ranks the
DP would need ~10^9 steps. Spare ranks left over then go, one improvement at a time, to
whichever bin is slowest, while that lowers its time (``fill_spare``).
"""

from __future__ import annotations

import heapq

import numpy as np


def least_makespan_extra(table: np.ndarray, slack: int) -> np.ndarray:
    """Extra ranks per bin (beyond its minimum) that minimise the largest time.

    ``table[i, s]`` is bin ``i``'s time with ``m_i + s`` ranks for ``s = 0..slack``
    (``inf`` where not allowed; column 0 must be finite). The result sums to at most
    ``slack``; each bin gets the fewest extra ranks that reach the optimum.
    """
    k = table.shape[0]
    if slack <= 0 or k == 0:
        return np.zeros(k, dtype=np.int64)
    prefix = np.minimum.accumulate(table[:, : slack + 1], axis=1)
    flat = prefix.ravel()
    kth = flat.size - (slack + 1)
    target = np.partition(flat, kth)[kth]
    return (prefix > target).sum(axis=1).astype(np.int64)


def fill_spare(table: np.ndarray, extra: np.ndarray, slack: int) -> np.ndarray:
    """Hand the ranks ``extra`` leaves unused to the slowest bin while that lowers its time.

    Each step gives the currently slowest bin the fewest further ranks that make it
    strictly faster; stops when the slowest cannot improve or no rank is left.
    """
    extra = extra.copy()
    left = slack - int(extra.sum())
    if left <= 0:
        return extra
    rows = np.arange(table.shape[0])
    heap = [(-float(t), int(i)) for i, t in zip(rows, table[rows, extra])]
    heapq.heapify(heap)
    while left > 0 and heap:
        neg, i = heapq.heappop(heap)
        cur = -neg
        s = int(extra[i])
        window = table[i, s + 1 : s + 1 + left]
        better = np.nonzero(window < cur)[0]
        if better.size == 0:
            break
        step = int(better[0]) + 1
        extra[i] = s + step
        left -= step
        heapq.heappush(heap, (-float(table[i, s + step]), i))
    return extra


def dp_least_makespan(table: np.ndarray, mins: np.ndarray, ranks: int) -> float:
    """The textbook O(K N^2) DP of the FCP paper; a reference for tests, not for planning.

    ``table[i, s]`` is bin ``i``'s time at ``mins[i] + s`` ranks. Returns the least
    makespan over assignments using at most ``ranks`` ranks (``inf`` if none fits).
    """
    inf = float("inf")
    best = [0.0] + [inf] * ranks  # best[j]: least makespan of the bins so far on exactly j ranks
    for i in range(table.shape[0]):
        new = [inf] * (ranks + 1)
        for j in range(ranks + 1):
            if best[j] == inf:
                continue
            for s in range(table.shape[1]):
                d = int(mins[i]) + s
                if j + d > ranks:
                    break
                t = max(best[j], float(table[i, s]))
                if t < new[j + d]:
                    new[j + d] = t
        best = new
    return min(best)
