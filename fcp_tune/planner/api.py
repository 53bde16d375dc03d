"""Entry points: :func:`plan_batch` (one batch -> one plan) and :func:`candidate_ranges`.

Input checks live here once; each kind's algorithm lives in its own module, listed in
:data:`PLANNERS` under the kind's name (its entry in :data:`fcp_tune.policy.kinds.KINDS`),
and returns waves of ``(start, size, seq_ids)``, turned here into the frozen :class:`Plan`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping, Sequence

import numpy as np

from fcp_tune.planner.adaptive import plan_adaptive
from fcp_tune.planner.cost import CostFn, DefaultCost
from fcp_tune.planner.megatron import plan_megatron
from fcp_tune.planner.plan import Group, Plan, Wave
from fcp_tune.planner.table import tabulated
from fcp_tune.planner.static import plan_static
from fcp_tune.planner.mcore_dynamic import plan_mcore_dynamic
from fcp_tune.planner.threshold import Placed, plan_threshold
from fcp_tune.planner.vocab import build_vocabulary
from fcp_tune.policy import Policy

PlanFn = Callable[[np.ndarray, Policy, CostFn], Placed]
# Each kind's planner: (lengths, policy, cost) -> waves of (start, size, seq_ids). One line per
# entry of fcp_tune.policy.kinds.KINDS (a test checks both name the same kinds).
PLANNERS: Mapping[str, PlanFn] = MappingProxyType({
    "megatron": plan_megatron,
    "static": plan_static,
    "mcore-dynamic": plan_mcore_dynamic,
    "pow2": plan_threshold,
    "thresholds": plan_threshold,
    "adaptive": plan_adaptive,
})


def _lengths(seqlens: Sequence[int]) -> np.ndarray:
    """Sequence lengths as an int64 array; empty, non-integer or < 1 raise ``ValueError``."""
    if len(seqlens) == 0:
        raise ValueError("seqlens is empty: a batch needs at least one sequence")
    arr = np.asarray(seqlens)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        if arr.ndim == 1 and arr.dtype == object and all(isinstance(x, int) for x in seqlens):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"seqlens must be a flat list of integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = np.nonzero(arr < 1)[0]
    if bad.size:
        raise ValueError(f"seqlens[{bad[0]}] = {arr[bad[0]]}: sequence lengths must be >= 1")
    return arr


def plan_batch(seqlens: Sequence[int], policy: Policy, *, cost: CostFn | None = None) -> Plan:
    """Plan one batch: which contiguous rank groups process which sequences, wave by wave.

    The plan spans ``policy.world_size`` ranks (use :meth:`Policy.with_world_size` to
    evaluate a policy at another size). ``cost`` defaults to :class:`DefaultCost`. The
    result is deterministic and satisfies :meth:`Plan.validate`. Raises ``ValueError`` for
    an empty batch, a length < 1, or a sequence the policy cannot fit.
    """
    lengths = _lengths(seqlens)
    # A calibrated cost model plans through its tabulated form (module fcp_tune.planner.table).
    placed = PLANNERS[policy.kind](lengths, policy, tabulated(cost) if cost is not None else DefaultCost())
    waves = tuple(
        Wave(tuple(Group(int(a), int(b), tuple(sorted(ids))) for a, b, ids in sorted(w, key=lambda g: g[0])))
        for w in placed
    )
    return Plan(world_size=policy.world_size, waves=waves, kind=policy.kind)


def candidate_ranges(policy: Policy, *, max_seqlen: int | None = None) -> tuple[tuple[int, int], ...]:
    """Every ``(start, size)`` :func:`plan_batch` may produce for ``policy``, sorted.

    The executor creates one communicator per entry, once, in this order. Fixed-degree
    kinds (static, pow2, thresholds) place degree ``d`` only at multiples of ``d``, so the
    list is ``(k d, d)`` for every degree the policy can give (:meth:`Policy.possible_degrees`);
    pass ``max_seqlen`` (the longest sequence the run will see) to leave out the raised
    degrees only longer sequences would need. Adaptive plans use the single ranks and the
    group vocabulary (:mod:`fcp_tune.planner.vocab`: node-aligned, at most
    ``policy.max_communicators`` per rank); with ``max_communicators = 0`` any contiguous
    range, all ``N (N + 1) / 2`` of them. The executor creates groups lazily, as plans need them.
    """
    n = policy.world_size
    if not policy.rule.aligned:
        vocab = build_vocabulary(n, policy.gpus_per_node, policy.max_communicators)
        if vocab.capped:
            return tuple(sorted({(a, 1) for a in range(n)} | set(vocab.ranges)))
        return tuple((a, s) for a in range(n) for s in range(1, n - a + 1))
    out = {(k * d, d) for d in policy.possible_degrees(max_seqlen) for k in range(n // d)}
    return tuple(sorted(out))
