"""The kernel calls of one rank: its scheme's blocks (:mod:`fcp_tune.schemes`) grouped into passes.

The blocks themselves are defined once, torch-free, by the scheme object; this module only
turns the rank's non-empty blocks of one step into :class:`Pass` es (one kernel call each):
full blocks first, then causal squares, each in (sequence, slot) order, and runs them
(:func:`forward_passes`, :func:`backward_passes`) for every autograd function.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from fcp_tune.attention.kernels import accumulate_backward, block_forward
from fcp_tune.attention.merge import merge_into, ranges_to_rows
from fcp_tune.schemes import get_scheme
from fcp_tune.schemes.base import Blocks
from fcp_tune.schemes.layout import ShardLayout

Range = tuple[int, int]


@dataclass(frozen=True)
class Pass:
    """One kernel call's worth of segments: disjoint query ranges, one key range each."""

    q_ranges: tuple[Range, ...]
    k_ranges: tuple[Range, ...]
    causal: bool


def passes(blocks: Blocks, rank: int, step: int) -> tuple[Pass, ...]:
    """The non-empty blocks of ``rank`` at ``step``, as at most two passes (full, then causal)."""
    q0, q1 = blocks.q0[step, rank], blocks.q1[step, rank]
    k0, k1 = blocks.k0[step, rank], blocks.k1[step, rank]
    live = (q1 > q0) & (k1 > k0)
    out = []
    for causal in (False, True):
        sel = live & (blocks.causal[step, rank] == causal)
        if sel.any():
            q = tuple(zip(q0[sel].tolist(), q1[sel].tolist()))
            k = tuple(zip(k0[sel].tolist(), k1[sel].tolist()))
            out.append(Pass(q, k, causal))
    return tuple(out)


@functools.lru_cache(maxsize=256)
def rank_passes(scheme: str, layout: ShardLayout, causal: bool, rank: int) -> tuple[tuple[Pass, ...], ...]:
    """Per step, the passes ``rank`` runs under ``scheme`` (memoised: every layer reuses them)."""
    blocks = get_scheme(scheme).blocks(layout, causal)
    return tuple(passes(blocks, rank, t) for t in range(blocks.steps))


def forward_passes(passes, q, k, v, out_acc: torch.Tensor, lse_acc: torch.Tensor, scale: float) -> None:
    """Run ``passes`` on ``q`` against ``k``/``v`` and merge each into the accumulators (log-sum-exp)."""
    for p in passes:
        o, l = block_forward(q, k, v, p.q_ranges, p.k_ranges, p.causal, scale)
        merge_into(out_acc, lse_acc, ranges_to_rows(p.q_ranges, q.device), o, l)


def backward_passes(passes, dout, q, k, v, out, lse, scale: float, dq, dk, dv) -> None:
    """Add the gradients of ``passes`` into ``dq`` (query rows) and ``dk``, ``dv`` (in place; views are fine).

    ``out`` and ``lse`` are the final (merged) output and log-sum-exp of all of ``q``'s rows.
    """
    for p in passes:
        accumulate_backward((dq, dk, dv), dout, q, k, v, out, lse, p.q_ranges, p.k_ranges, p.causal, scale)


def segment_rows(blocks: Blocks, rank: int) -> np.ndarray:
    """``(q_len, k_len, causal)`` of every non-empty block of ``rank`` over all steps, sorted (for checks)."""
    ql, kl = blocks.q_len[:, rank].ravel(), blocks.k_len[:, rank].ravel()
    c = blocks.causal[:, rank].ravel()
    live = (ql > 0) & (kl > 0)
    rows = np.stack([ql[live], kl[live], c[live].astype(np.int64)], axis=1)
    return rows[np.lexsort(rows.T[::-1])] if len(rows) else rows.reshape(0, 3)
