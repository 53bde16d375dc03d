"""fcp-tune's own static-CP planner: one degree, DP replicas, balanced micro-batches.

A stronger baseline than Megatron-LM as users run it (kind ``megatron``,
:mod:`fcp_tune.planner.megatron`: first-fit token packing in arrival order, round-robin
micro-batches): here sequences are dealt longest first and micro-batches are packed
best-fit-decreasing and run costliest first. Reports call its fastest degree "best static".

With CP degree ``d`` the ranks form ``N // d`` data-parallel replicas at starts
``0, d, 2d, ...`` (the last ``N % d`` ranks idle). Sequences are dealt longest first to
the replica holding the fewest tokens so far (token balance, as Megatron-LM does, not cost
balance: this is the baseline), then each replica's sequences are packed
best-fit-decreasing into micro-batches that fit ``d`` ranks exactly, ordered most
expensive first. Wave ``k`` runs every replica's ``k``-th micro-batch, so costly
micro-batches of different replicas overlap.

A sequence longer than ``d x token_budget`` cannot run at degree ``d``; the policy raises
its degree to the memory minimum (:meth:`Policy.degree_for`). Such sequences are packed
by degree and placed after the regular waves on aligned ranges (:func:`place_fixed`).
"""

from __future__ import annotations

import heapq
import numpy as np

from fcp_tune.planner.cost import CostFn, cost_table
from fcp_tune.planner.packing import pack_class
from fcp_tune.planner.threshold import Placed, place_by_degree
from fcp_tune.policy import Policy


def plan_static(lengths: np.ndarray, policy: Policy, cost: CostFn) -> Placed:
    """Waves of ``(start, size, seq_ids)`` for a static policy (see the module docstring)."""
    n = policy.world_size
    d = int(policy.degree)  # type: ignore[arg-type]
    budget = policy.token_budget
    degs = policy.degrees_for(lengths)
    regular = np.nonzero(degs == d)[0]
    replicas = n // d

    # Deal longest first to the replica with the fewest tokens (ties: lowest replica).
    dealt: list[list[int]] = [[] for _ in range(replicas)]
    heap = [(0, r) for r in range(replicas)]
    for s in sorted(regular.tolist(), key=lambda s: (-int(lengths[s]), s)):
        tokens, r = heapq.heappop(heap)
        dealt[r].append(s)
        heapq.heappush(heap, (tokens + int(lengths[s]), r))

    waves: Placed = []
    for r, ids in enumerate(dealt):
        if not ids:
            continue
        micro = pack_class(ids, lengths, d, budget)
        times = cost_table(cost, [lengths[m] for m in micro], np.full((len(micro), 1), d))[:, 0]
        order = sorted(range(len(micro)), key=lambda k: (-times[k], min(micro[k])))
        for k, m in enumerate(order):
            if k == len(waves):
                waves.append([])
            waves[k].append((r * d, d, micro[m]))

    extra = np.nonzero(degs != d)[0]
    if extra.size:
        waves.extend(place_by_degree(lengths, degs, budget, n, cost, ids=extra))
    return waves

