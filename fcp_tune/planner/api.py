"""Entry points: :func:`plan_batch` (one batch -> one plan) and :func:`candidate_ranges`.

Input checks live here once; each kind's algorithm lives in its own module (named by its
entry in :data:`fcp_tune.policy_kinds.KINDS`) and returns waves of ``(start, size, seq_ids)``,
turned here into the frozen :class:`Plan`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fcp_tune.planner.cost import CostFn, DefaultCost
from fcp_tune.planner.plan import Group, Plan, Wave
from fcp_tune.planner.vocab import build_vocabulary
from fcp_tune.policy import Policy
from fcp_tune.policy_kinds import kind_of


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


def plan_batch(
    seqlens: Sequence[int], policy: Policy, world_size: int, cost: CostFn | None = None
) -> Plan:
    """Plan one batch: which contiguous rank groups process which sequences, wave by wave.

    ``world_size`` must equal ``policy.world_size`` (use :meth:`Policy.with_world_size` to
    evaluate a policy at another size). ``cost`` defaults to :class:`DefaultCost`. The
    result is deterministic and satisfies :meth:`Plan.validate`. Raises ``ValueError`` for
    an empty batch, a length < 1, or a sequence the policy cannot fit.
    """
    if world_size != policy.world_size:
        raise ValueError(
            f"world_size {world_size} differs from the policy's world_size {policy.world_size}; "
            "use policy.with_world_size(n) to plan at another size"
        )
    lengths = _lengths(seqlens)
    placed = kind_of(policy.kind).plan_fn()(lengths, policy, cost if cost is not None else DefaultCost())
    waves = tuple(
        Wave(tuple(Group(int(a), int(b), tuple(sorted(ids))) for a, b, ids in sorted(w, key=lambda g: g[0])))
        for w in placed
    )
    return Plan(world_size=world_size, waves=waves, kind=policy.kind)


def candidate_ranges(
    policy: Policy, world_size: int, max_seqlen: int | None = None
) -> tuple[tuple[int, int], ...]:
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
    if world_size != policy.world_size:
        raise ValueError(
            f"world_size {world_size} differs from the policy's world_size {policy.world_size}"
        )
    n = world_size
    if not kind_of(policy.kind).aligned:
        vocab = build_vocabulary(n, policy.gpus_per_node, policy.max_communicators)
        if vocab.capped:
            return tuple(sorted({(a, 1) for a in range(n)} | set(vocab.ranges)))
        return tuple((a, s) for a in range(n) for s in range(1, n - a + 1))
    out = {(k * d, d) for d in policy.possible_degrees(max_seqlen) for k in range(n // d)}
    return tuple(sorted(out))
