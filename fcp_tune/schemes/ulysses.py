"""Ulysses scheme (DeepSpeed-Ulysses style): all-to-all from tokens to heads and back.

Each rank starts with its zigzag share of every sequence, all heads. An all-to-all gives
rank ``r`` every token of the group (global packed order) for query heads
``[r H_q/d, (r+1) H_q/d)`` and K/V heads ``[r H_kv/d, (r+1) H_kv/d)``; it attends each
whole sequence locally (one causal square, or one full block, per sequence) and a second
all-to-all returns the output to the token layout. Backward: dO to heads, the local
backward, dQ/dK/dV back to tokens.

Buffers: queries and keys are both the head-sliced global packed batch
(``head_share = 1/d``). Degree rule (GQA): ``d`` must divide ``H_kv`` (hence ``H_q``, a
multiple of it), so that every rank's query heads use exactly its own K/V heads.
Memory: the head-layout Q, K, V, output and log-sum-exp are kept for backward; Q, K, V
and lse replace the local ones, the output copy (``T/d`` tokens of all query heads'
width) comes on top.
"""

from __future__ import annotations

import numpy as np

from fcp_tune.modelcfg import ModelConfig
from fcp_tune.schemes.base import Blocks, CommStep, Scheme, acc_bytes, dkv_bytes, kv_bytes, make_blocks
from fcp_tune.schemes.layout import ShardLayout


def q_bytes(model: ModelConfig, element: int) -> float:
    """Bytes of one token's queries (all heads) with ``element``-byte elements."""
    return float(model.heads * model.head_dim * element)


class Ulysses(Scheme):
    """See the module docstring."""

    name = "ulysses"
    ops = ("all_to_all",)
    lockstep = False

    def blocks(self, layout: ShardLayout, causal: bool) -> Blocks:
        cu = np.asarray(layout.cu_seqlens, dtype=np.int64)
        a = cu[:-1][None, None, :, None]
        b = cu[1:][None, None, :, None]
        ranks = np.zeros((1, layout.degree, 1, 1), dtype=np.int64)
        return make_blocks(a + ranks, b, a, b, causal, head_share=1.0 / layout.degree)

    def comm_steps(self, degree: int, width: float, model: ModelConfig) -> tuple[CommStep, ...]:
        if degree == 1:
            return ()
        q, qa = q_bytes(model, model.dtype_bytes), q_bytes(model, acc_bytes(model))
        return (
            CommStep("forward", "all_to_all", width * (q + kv_bytes(model)), what="Q, K, V tokens -> heads"),
            CommStep("forward", "all_to_all", width * q, what="output heads -> tokens"),
            CommStep("backward", "all_to_all", width * q, what="dO tokens -> heads"),
            CommStep("backward", "all_to_all", width * (qa + dkv_bytes(model)), what="dQ, dK, dV heads -> tokens"),
        )

    def kept_bytes(self, degree: int, counts: np.ndarray, model: ModelConfig) -> float:
        if degree == 1:
            return 0.0
        return -(-int(np.sum(counts)) // degree) * q_bytes(model, model.dtype_bytes)

    def degree_error(self, degree: int, heads: int, kv_heads: int) -> str | None:
        why = super().degree_error(degree, heads, kv_heads)
        if why is None and kv_heads % int(degree):
            why = (f"degree {degree} must divide the K/V head count {kv_heads} (and so the query head "
                   f"count {heads}): each rank attends H_kv/d K/V heads and their H_q/d query heads")
        return why
