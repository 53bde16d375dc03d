"""Planners for the fixed-degree policies: ``pow2`` (Megatron-Core dynamic CP) and ``thresholds``.

The policy fixes every sequence's degree (``ceil_pow2(ceil(L/budget))`` or a length
lookup). The planner then:

1. packs the sequences of each degree best-fit-decreasing into bins that fit that many
   ranks exactly (:func:`~fcp_tune.planner.packing.pack_class`); one bin becomes one group;
2. places the bins most expensive first (by the cost function, at their degree), each on
   the lowest free range aligned to its degree in the earliest wave that has one
   (:func:`~fcp_tune.planner.packing.place_fixed`). Expensive bins thus share the first
   waves (the planners minimise the sum of each wave's slowest group, an upper bound on the
   step time, so grouping costly work together is what lowers it) and cheap bins fill the
   idle ranks the costly ones leave.

Aligned starts keep the communicators few and known in advance: degree ``d`` only ever
uses ``[k d, (k+1) d)``. Group sizes are exactly the policy's degrees; idle ranks left over
stay idle.
"""

from __future__ import annotations

import heapq
from typing import Sequence

import numpy as np

from fcp_tune.planner.cost import CostFn, cost_table
from fcp_tune.planner.packing import pack_class, place_fixed
from fcp_tune.policy import Policy
from fcp_tune.schemes.layout import surely_fits

Placed = list[list[tuple[int, int, list[int]]]]


def plan_threshold(lengths: np.ndarray, policy: Policy, cost: CostFn) -> Placed:
    """Waves of ``(start, size, seq_ids)`` for a pow2 or thresholds policy."""
    degs = policy.degrees_for(lengths)
    n, budget = policy.world_size, policy.token_budget
    candidates = [place_by_degree(lengths, degs, budget, n, cost)]
    balanced = place_balanced(lengths, degs, budget, n, cost)
    if balanced is not None:
        candidates.append(balanced)
    # Keep the faster by the cost's critical path (ties: the wave-by-wave placement).
    return min(candidates, key=lambda placed: _critical_path(placed, lengths, n, cost))


def _critical_path(placed: Placed, lengths: np.ndarray, world_size: int, cost: CostFn) -> float:
    free = np.zeros(world_size)
    groups = [(start, size, ids) for wave in placed for start, size, ids in wave]
    times = cost_table(cost, [lengths[ids] for _, _, ids in groups], np.array([[size] for _, size, _ in groups]))
    k = 0
    for wave in placed:
        for start, size, _ in wave:
            free[start : start + size] = free[start : start + size].max() + times[k, 0]
            k += 1
    return float(free.max())


def _aligned_starts(sizes: Sequence[int], world_size: int) -> list[int] | None:
    """Starts for groups of ``sizes`` (largest first), each at a multiple of its size; None if full."""
    occupied = bytearray(world_size)
    next_free: dict[int, int] = {}  # size -> lowest aligned start that may be free
    starts = []
    for d in sizes:
        p = next_free.get(d, 0)
        while p + d <= world_size:
            hit = occupied.find(1, p, p + d)
            if hit < 0:
                break
            p = (hit // d + 1) * d
        if p + d > world_size:
            return None
        occupied[p : p + d] = b"\x01" * d
        starts.append(p)
        next_free[d] = p + d
    return starts


def place_balanced(
    lengths: np.ndarray, degs: np.ndarray, budget: int, world_size: int, cost: CostFn
) -> Placed | None:
    """Persistent, cost-balanced groups per degree class (module docstring); None if the
    classes' degrees do not fit the world side by side."""
    classes = sorted(set(degs.tolist()), reverse=True)
    if not classes:
        return []
    groups = list(classes)
    if _aligned_starts(groups, world_size) is None:
        return None
    members = {d: np.nonzero(degs == d)[0].tolist() for d in classes}
    seq_cost = {
        d: cost_table(cost, [[int(lengths[s])] for s in members[d]], np.full((len(members[d]), 1), d))[:, 0]
        for d in classes
    }
    total = {d: float(seq_cost[d].sum()) for d in classes}
    longest = {d: float(seq_cost[d].max()) for d in classes}
    count = {d: 1 for d in classes}
    free = world_size - sum(classes)
    added: list[int] = []
    while True:
        estimate = {d: max(total[d] / count[d], longest[d]) for d in classes}
        d = max(classes, key=lambda c: (estimate[c], c))
        if total[d] / count[d] <= longest[d] or d > free:
            break  # bound by its longest sequence, or no room: more groups do not help
        count[d] += 1
        free -= d
        added.append(d)
    groups = sorted(groups + added, reverse=True)
    starts = _aligned_starts(groups, world_size)
    while starts is None:  # alignment wasted ranks: give back the last groups added
        d = added.pop()
        count[d] -= 1
        groups.remove(d)
        starts = _aligned_starts(groups, world_size)
    slots: dict[int, list[int]] = {}
    for d, start in zip(groups, starts):
        slots.setdefault(d, []).append(start)
    waves: Placed = []
    for d in classes:
        heap = [(0.0, k) for k in range(count[d])]
        dealt: list[list[int]] = [[] for _ in range(count[d])]
        for j in sorted(range(len(members[d])), key=lambda j: (-seq_cost[d][j], members[d][j])):
            load, k = heapq.heappop(heap)
            dealt[k].append(members[d][j])
            heapq.heappush(heap, (load + float(seq_cost[d][j]), k))
        for k, ids in enumerate(dealt):
            if not ids:
                continue
            if surely_fits(int(lengths[ids].sum()), len(ids), d, budget):
                micro, order = [ids], [0]  # fits one micro-batch (sufficient rule, see pack_class)
            else:
                micro = pack_class(ids, lengths, d, budget)
                times = cost_table(cost, [lengths[m] for m in micro], np.full((len(micro), 1), d))[:, 0]
                order = sorted(range(len(micro)), key=lambda m: (-times[m], min(micro[m])))
            for w, m in enumerate(order):
                if w == len(waves):
                    waves.append([])
                waves[w].append((slots[d][k], d, sorted(micro[m])))
    for wave in waves:
        wave.sort(key=lambda g: g[0])
    return waves


def place_by_degree(
    lengths: np.ndarray,
    degs: np.ndarray,
    budget: int,
    world_size: int,
    cost: CostFn,
    ids: Sequence[int] | np.ndarray | None = None,
) -> Placed:
    """Pack sequences ``ids`` (default all) per degree ``degs[s]``; place bins costliest first."""
    sel = np.arange(len(lengths)) if ids is None else np.asarray(ids, dtype=np.int64)
    bins: list[tuple[int, list[int]]] = []
    sel_degs = degs[sel]
    for d in sorted(set(sel_degs.tolist()), reverse=True):
        members = sel[sel_degs == d].tolist()
        bins.extend((d, b) for b in pack_class(members, lengths, d, budget))
    if not bins:
        return []
    times = cost_table(
        cost, [lengths[b] for _, b in bins], np.array([[d] for d, _ in bins], dtype=np.int64)
    )[:, 0]
    order = sorted(range(len(bins)), key=lambda k: (-times[k], -bins[k][0], min(bins[k][1])))
    return place_fixed([bins[k] for k in order], world_size)
