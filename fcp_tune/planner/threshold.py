"""Planners for the fixed-degree policies: ``pow2`` (Megatron-Core dynamic CP) and ``thresholds``.

The policy fixes every sequence's degree (``ceil_pow2(ceil(L/budget))`` or a length
lookup). The planner then:

1. packs the sequences of each degree best-fit-decreasing into bins that fit that many
   ranks exactly (:func:`~fcp_tune.planner.packing.pack_class`); one bin becomes one group;
2. places the bins most expensive first (by the cost function, at their degree), each on
   the lowest free range aligned to its degree in the earliest wave that has one
   (:func:`~fcp_tune.planner.packing.place_fixed`). Expensive bins thus share the first
   waves (the step time is the sum of each wave's slowest group, so grouping costly work
   together is what lowers it) and cheap bins fill the idle ranks the costly ones leave.

Aligned starts keep the communicators few and known in advance: degree ``d`` only ever
uses ``[k d, (k+1) d)``. Group sizes are exactly the policy's degrees; idle ranks left over
stay idle.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fcp_tune.planner.cost import CostFn, cost_table
from fcp_tune.planner.packing import pack_class, place_fixed, policy_degrees
from fcp_tune.policy import Policy

Placed = list[list[tuple[int, int, list[int]]]]


def plan_threshold(lengths: np.ndarray, policy: Policy, cost: CostFn) -> Placed:
    """Waves of ``(start, size, seq_ids)`` for a pow2 or thresholds policy."""
    degs = policy_degrees(policy, lengths)
    return place_by_degree(lengths, degs, policy.token_budget, policy.world_size, cost)


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
