"""The Megatron-LM static CP baseline, as its users run it (kind ``megatron``).

One CP degree ``d`` for the run, ``N / d`` data-parallel replicas at ranks ``[r d, (r+1) d)``
(``d`` divides ``N``). Per batch:

1. every sequence is padded to a multiple of ``2 d`` tokens (TransformerEngine's THD
   format splits each sequence of a packed micro-batch into ``2 d`` equal chunks, two per
   CP rank: :func:`~fcp_tune.policy.degrees.pad_to_multiple`);
2. the padded sequences are packed **first fit, in arrival order** into micro-batches of
   at most ``d * token_budget`` tokens (every rank then holds exactly ``padded / d`` tokens
   of each sequence, so a micro-batch fits memory iff its padded tokens fit;
   :func:`first_fit`);
3. micro-batch ``k`` goes to replica ``k mod (N / d)`` as its ``k div (N / d)``-th
   gradient-accumulation step (Megatron's data sampler deals consecutive samples of a global
   batch to consecutive DP ranks). No cost balancing: a replica that draws the long
   sequences is the step's critical path.

The sources each rule follows are cited in ``docs/POLICIES.md``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fcp_tune.planner.cost import CostFn
from fcp_tune.policy import Policy

Placed = list[list[tuple[int, int, list[int]]]]


def first_fit(lengths: Sequence[int] | np.ndarray, capacity: int) -> list[list[int]]:
    """Sequence indices packed first fit in the given order into bins of ``capacity`` tokens.

    Each sequence goes into the lowest-numbered open bin with room for it; a new bin opens
    when none has. Raises ``ValueError`` naming a sequence longer than ``capacity``.
    """
    arr = np.asarray(lengths, dtype=np.int64)
    if arr.size and int(arr.max()) > capacity:
        s = int(np.argmax(arr))
        raise ValueError(f"sequence {s} ({int(arr[s])} tokens) exceeds the micro-batch of {capacity} tokens")
    room = np.empty(max(1, arr.size), dtype=np.int64)
    bins: list[list[int]] = []
    for s, length in enumerate(arr.tolist()):
        fits = np.nonzero(room[: len(bins)] >= length)[0]
        if fits.size:
            b = int(fits[0])
        else:
            b = len(bins)
            bins.append([])
            room[b] = capacity
        bins[b].append(s)
        room[b] -= length
    return bins


def deal_round_robin(micro_batches: Sequence[list[int]], degree: int, world_size: int) -> Placed:
    """Micro-batch ``k`` to replica ``k mod (N / d)`` in wave ``k div (N / d)``."""
    replicas = world_size // degree
    waves: Placed = []
    for k, ids in enumerate(micro_batches):
        w, r = divmod(k, replicas)
        if w == len(waves):
            waves.append([])
        waves[w].append((r * degree, degree, list(ids)))
    return waves


def plan_megatron(lengths: np.ndarray, policy: Policy, cost: CostFn) -> Placed:
    """Waves of ``(start, size, seq_ids)`` for a megatron policy (see the module docstring).

    ``cost`` is unused: Megatron-LM does not balance by cost.
    """
    policy.degrees_for(lengths)  # raises, naming the length, for a sequence that cannot fit
    d = int(policy.degree)  # type: ignore[arg-type]
    padded = policy.padded(lengths)
    return deal_round_robin(first_fit(padded, d * policy.token_budget), d, policy.world_size)
