"""Joint scheduling of all waves against the critical path: packed bins as moldable jobs.

The per-wave planner (:mod:`.adaptive`) fixes the waves first and then chooses degrees
wave by wave, so a rank that finishes its first-wave group early waits for the whole wave.
A real cluster (and :func:`~fcp_tune.planner.cost.finish_times`) starts a group as soon as
its own ranks are free. This module plans for that directly, as in the classic
allotment-then-list-scheduling methods for moldable jobs:

1. **Jobs.** Every packed bin whose minimum degree is >= 2 is a job that may run on any
   allowed group size from its minimum up (memory permitting; :func:`.pool.row_table`);
   so is a short sequence that alone takes longer than the time target.
2. **Allotment from a target T.** Each job gets the fewest ranks that bring it within
   ``T`` (the least work that meets the target), or its fastest size when none does.
3. **List scheduling.** Jobs go longest first onto the allowed rank range that is free
   earliest (ties: the range that leaves the least idle time, then the leftmost); the
   short sequences are then dealt costliest first into the idle gaps this leaves (a rank
   waiting for the other ranks of its next group), else to the rank that is free earliest,
   as degree-1 groups that respect the token budget. A group's wave is one more than the
   last wave on any of its ranks, so the plan's critical path is exactly the schedule.
4. **T searched** over a geometric ladder above the lower bound (all work spread evenly,
   or the longest job at its fastest size), until :data:`PATIENCE` distinct allotments in
   a row bring no gain; the candidate with the least predicted critical path is returned. :func:`~.adaptive.plan_adaptive` compares it with the
   paper's packing + DP plan and keeps the better of the two.

Group ranges respect the vocabulary (:mod:`.vocab`: only its ranges when capped) and the
token budget (exact zigzag check where the sufficient rule is not enough).
"""

from __future__ import annotations

import bisect
import heapq

import numpy as np

from fcp_tune.planner.cost import CostFn, cost_table, finish_times
from fcp_tune.planner.plan import Group, Plan, Wave
from fcp_tune.planner.adaptive_wave import row_table
from fcp_tune.planner.table import estimate_table
from fcp_tune.planner.vocab import Vocabulary

Placed = list[list[tuple[int, int, list[int]]]]

# Targets tried, as multiples of the lower bound (about 3 % apart near it, wider above).
T_LADDER = (1.0, 1.01, 1.02, 1.035, 1.05, 1.07, 1.1, 1.15, 1.2, 1.3, 1.45, 1.7, 2.0)
GAP_MARGIN = 0.01  # share of an idle gap left empty when backfilling (the estimates' error)
GAP_PROBES = 8  # gaps tried per short sequence, smallest fitting first
PATIENCE = 3  # distinct allotments in a row without a shorter critical path before stopping


def plan_joint(
    bins: list[list[int]], m: np.ndarray, lengths: np.ndarray, n: int, budget: int, cost: CostFn,
    vocab: Vocabulary,
) -> tuple[float, Placed] | None:
    """Best list schedule over the target ladder: ``(critical path, waves)``, or ``None``.

    ``bins``/``m``: the adaptive planner's packed bins and their minimum (allowed) sizes.
    """
    long_ids = [i for i in range(len(bins)) if m[i] > 1]
    short = np.array([s for i in range(len(bins)) if m[i] == 1 for s in bins[i]], dtype=np.int64)
    c1 = (estimate_table(cost, [lengths[[s]] for s in short.tolist()], np.ones((short.size, 1), dtype=np.int64))[:, 0]
          if short.size else np.zeros(0))
    rows = [bins[i] for i in long_ids]
    row_m = m[long_ids].astype(np.int64)
    slack = n - 1
    table = row_table(rows, row_m, slack, lengths, budget, cost, limit=n) if rows else np.zeros((0, slack + 1))
    work = float((table[:, 0] * row_m).sum() + c1.sum())
    bound = max(work / n, float(table.min(axis=1).max(initial=0.0)))
    # A short sequence slower alone than the bound may need more ranks: a job too. Others never are.
    big = np.nonzero(c1 > bound)[0]
    if big.size:
        extra = row_table([[int(short[i])] for i in big.tolist()], np.ones(big.size, dtype=np.int64), slack, lengths,
                          budget, cost, limit=n)
        table = np.concatenate([table, extra])
        bound = max(bound, float(extra.min(axis=1).max()))
    jobs = rows + [[int(short[i])] for i in big.tolist()]
    job_m = np.concatenate([row_m, np.ones(big.size, dtype=np.int64)])
    if not np.isfinite(table.min(axis=1, initial=np.inf)).all():
        return None
    in_pool = np.ones(short.size, dtype=bool)
    in_pool[big] = False
    pool = short[in_pool]
    pool_c1 = c1[in_pool]
    best: tuple[float, Placed] | None = None
    seen: set[bytes] = set()
    misses = 0
    for f in T_LADDER:
        if misses >= PATIENCE:
            break  # looser targets only over-shard less; several in a row did not help
        target = bound * f
        ok = table <= target
        first = np.where(ok.any(axis=1), ok.argmax(axis=1), table.argmin(axis=1))
        alloc = job_m + first
        key = alloc.tobytes()
        if key in seen:
            continue
        seen.add(key)
        placed = _schedule(jobs, alloc, table[np.arange(len(jobs)), first], pool, pool_c1, lengths, n, budget, vocab)
        if placed is None:
            continue
        span = critical_path(placed, lengths, n, cost)
        if best is None or span < best[0]:
            best, misses = (span, placed), 0
        else:
            misses += 1
    return best


def _schedule(
    jobs: list[list[int]], alloc: np.ndarray, times: np.ndarray, pool: np.ndarray, pool_c1: np.ndarray,
    lengths: np.ndarray, n: int, budget: int, vocab: Vocabulary,
) -> Placed | None:
    """List-schedule the jobs, backfill idle gaps and then the tails with the short sequences.

    Waves follow each rank's order in time: a group's wave is one more than the last wave on
    any of its ranks, taking groups by start time.
    """
    free = np.zeros(n)
    placed: list[tuple[float, int, int, list[int]]] = []  # (start time, first rank, size, seq ids)
    spans: list[list[tuple[float, float]]] = [[] for _ in range(n)]  # per rank: busy intervals, in time order
    order = sorted(range(len(jobs)), key=lambda j: (-times[j], -alloc[j], j))
    for j in order:
        d = int(alloc[j])
        starts = np.asarray(vocab.starts(d) if vocab.capped and d > 1 else range(n - d + 1), dtype=np.int64)
        if starts.size == 0:
            return None
        idx = np.stack([starts, starts + d], axis=1).ravel()
        begin = np.maximum.reduceat(np.append(free, 0.0), idx)[::2]
        sums = np.concatenate([[0.0], np.cumsum(free)])
        idle = d * begin - (sums[starts + d] - sums[starts])
        k = int(np.lexsort((starts, idle, begin))[0])
        a, t0 = int(starts[k]), float(begin[k])
        end = t0 + float(times[j])
        placed.append((t0, a, d, list(jobs[j])))
        for r in range(a, a + d):
            spans[r].append((t0, end))
        free[a : a + d] = end
    # Idle gaps before a job starts (its other ranks were still busy): room for short sequences.
    gaps: list[tuple[float, int, float]] = []  # (length, rank, gap start)
    for r in range(n):
        prev = 0.0
        for t0, t1 in spans[r]:
            if t0 - prev > 0:
                gaps.append((t0 - prev, r, prev))
            prev = t1
    gaps.sort()
    # Short sequences: costliest first into the smallest gap they fit (one degree-1 group of at
    # most ``budget`` tokens per gap, GAP_MARGIN of the gap kept free for estimate error), else
    # to the rank free earliest, as degree-1 groups of at most ``budget`` tokens.
    order = np.lexsort((pool, -pool_c1)).tolist()
    seqs, secs, toks = pool.tolist(), pool_c1.tolist(), lengths[pool].tolist()
    keys = [g[0] for g in gaps]
    fill: dict[int, tuple[list[int], int]] = {}  # gap index -> (seq ids, tokens)
    left = [g[0] * (1.0 - GAP_MARGIN) for g in gaps]
    heap = [(at, r) for r, at in enumerate(free.tolist())]
    heapq.heapify(heap)
    tails: list[list[list[int]]] = [[] for _ in range(n)]  # per rank: its degree-1 groups after its jobs
    room = [0] * n  # tokens left in each rank's last tail group
    tail_start: list[list[float]] = [[] for _ in range(n)]
    for i in order:
        at = bisect.bisect_left(keys, secs[i])
        for g in range(at, min(at + GAP_PROBES, len(gaps))):
            ids, used = fill.get(g, ([], 0))
            if left[g] >= secs[i] and used + toks[i] <= budget:
                ids.append(seqs[i])
                fill[g] = (ids, used + toks[i])
                left[g] -= secs[i]
                break
        else:
            t, r = heapq.heappop(heap)
            if toks[i] > room[r]:
                tails[r].append([])
                tail_start[r].append(t)
                room[r] = budget
            tails[r][-1].append(seqs[i])
            room[r] -= toks[i]
            heapq.heappush(heap, (t + secs[i], r))
    for g, (ids, _) in fill.items():
        placed.append((gaps[g][2], gaps[g][1], 1, ids))
    for r in range(n):
        for t, ids in zip(tail_start[r], tails[r]):
            placed.append((t, r, 1, ids))
    placed.sort(key=lambda p: (p[0], p[1]))
    last_wave = np.full(n, -1, dtype=np.int64)
    waves: Placed = []
    for _, a, d, ids in placed:
        w = int(last_wave[a : a + d].max()) + 1
        while len(waves) <= w:
            waves.append([])
        waves[w].append((a, d, ids))
        last_wave[a : a + d] = w
    return waves


def critical_path(placed: Placed, lengths: np.ndarray, n: int, cost: CostFn) -> float:
    """Predicted critical path of waves of ``(start, size, seq_ids)`` (:func:`finish_times`), exact costs."""
    flat = [g for w in placed for g in w]
    times = cost_table(cost, [lengths[ids] for _, _, ids in flat], np.array([[g[1]] for g in flat]))[:, 0]
    plan = Plan(n, tuple(Wave(tuple(Group(a, b, tuple(ids)) for a, b, ids in w)) for w in placed), "adaptive")
    per_wave, k = [], 0
    for w in placed:
        per_wave.append(times[k : k + len(w)].tolist())
        k += len(w)
    return max(finish_times(plan, per_wave), default=0.0)
