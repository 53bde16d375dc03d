"""Degree rules: how many ranks a sequence needs, and how a kind pads it. A leaf module.

One copy of each rule, used alike by :class:`~fcp_tune.policy.Policy`, the planners
(:mod:`fcp_tune.planner`) and the cost model (:meth:`CostModel.sequence_work
<fcp_tune.costmodel.CostModel.sequence_work>`). Pure functions of integers; the only import
is the exact zigzag chunking of :mod:`fcp_tune.schemes.layout` they are defined against.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from fcp_tune.errors import FcpTuneError
from fcp_tune.schemes.layout import tokens_per_rank


def ceil_pow2(n: int) -> int:
    """The smallest power of two >= ``n`` (1 for ``n <= 1``)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def pad_to_multiple(lengths: Iterable[int] | np.ndarray, multiple: int) -> np.ndarray:
    """Each length rounded up to a multiple of ``multiple`` (int64 array; 1 leaves them as they are)."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    arr = np.asarray(lengths, dtype=np.int64)
    return -(-arr // multiple) * multiple


def thd_pad_multiple(degree: int) -> int:
    """What TransformerEngine's THD format with CP pads each sequence to: ``2 * degree`` (1 without CP)."""
    return 2 * int(degree) if int(degree) > 1 else 1


def min_degree_for(seqlen: int, token_budget: int) -> int:
    """Fewest ranks whose zigzag shards of a ``seqlen`` sequence hold <= ``token_budget`` each.

    This is ``ceil(seqlen / token_budget)`` for every even budget (provably: a rank holds
    two chunks of at most ``budget/2`` tokens each). With an odd budget the exact chunking
    of :mod:`fcp_tune.schemes.layout` can put ``budget + 1`` tokens on one rank at that degree;
    one more rank then suffices (a few more if the budget is below the degree). Using the
    exact rule keeps the planner's memory check and
    :meth:`Plan.validate <fcp_tune.planner.Plan.validate>` in agreement.
    """
    if seqlen < 1:
        return 1
    d = -(-seqlen // token_budget)
    if token_budget % 2 == 0:
        return d
    while max(tokens_per_rank(seqlen, d)) > token_budget:
        d += 1
    return d


def min_degrees(lengths: np.ndarray, token_budget: int) -> np.ndarray:
    """:func:`min_degree_for` of every length, as an int64 array (fast path for even budgets)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    m = -(-lengths // token_budget)
    if token_budget % 2:
        for k, length in enumerate(lengths.tolist()):
            m[k] = min_degree_for(length, token_budget)
    return np.maximum(m, 1)


def fitting_degree(
    seqlen: int, degree: int, token_budget: int, pow2: bool = False, limit: int | None = None
) -> int:
    """``degree``, or the next degree (power of two if ``pow2``) whose zigzag shards fit.

    A rank holds fewer than ``seqlen/degree + 2`` tokens and, for an even budget, never more
    than the budget once ``degree >= seqlen/budget``; only an odd budget with
    ``seqlen > degree * (budget - 1)`` needs the exact check (in practice: budgets smaller
    than the degree). The search stops at the first degree above ``limit`` (a larger degree
    need not fit either), which the caller then rejects.
    """
    if token_budget % 2 == 0 or seqlen <= degree * (token_budget - 1):
        return degree
    top = limit if limit is not None else max(seqlen, degree)
    while degree <= top and max(tokens_per_rank(seqlen, degree)) > token_budget:
        degree = degree * 2 if pow2 else degree + 1
    return degree


def dividing_degree(world_size: int, token_budget: int, longest: int, padded: bool = False) -> int | None:
    """The smallest degree that divides ``world_size`` and holds a ``longest``-token sequence
    (``None`` if none does); with ``padded``, after TransformerEngine's THD padding
    (:func:`thd_pad_multiple`), as the ``megatron`` kind pads.

    Megatron-LM needs the world size divisible by the CP size (DP = N / CP), so this is the
    degree a user would run.
    """
    for degree in range(min_degree_for(longest, token_budget), world_size + 1):
        if world_size % degree:
            continue
        if not padded or int(pad_to_multiple([longest], thd_pad_multiple(degree))[0]) <= degree * token_budget:
            return degree
    return None


def megatron_degrees(world_size: int, token_budget: int, longest: int, max_degree: int) -> list[int]:
    """Every ``--context-parallel-size`` a Megatron-LM user can run: dividing ``world_size`` and
    holding the ``longest`` sequence after its THD padding, ascending, up to ``max_degree`` (the
    smallest that fits is always in: :func:`dividing_degree` with ``padded``)."""
    fits = [d for d in range(min_degree_for(longest, token_budget), world_size + 1)
            if world_size % d == 0 and int(pad_to_multiple([longest], thd_pad_multiple(d))[0]) <= d * token_budget]
    return [d for k, d in enumerate(fits) if k == 0 or d <= max_degree]


def smallest_dividing_degree(world_size: int, token_budget: int, longest: int, padded: bool = False) -> int:
    """:func:`dividing_degree`, or an error naming the longest sequence when no degree holds it."""
    degree = dividing_degree(world_size, token_budget, longest, padded)
    if degree is None:
        raise FcpTuneError(
            f"the longest sequence ({longest} tokens) does not fit {world_size} ranks x {token_budget} tokens"
        )
    return degree
