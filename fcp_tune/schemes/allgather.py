"""All-gather scheme (Megatron/TransformerEngine "all_gather" style): gather K/V, reduce-scatter dK/dV.

Buffers: queries are the rank's local tensor; keys are the whole gathered batch in global
packed order. Causal: each local chunk ``[a, b)`` of a sequence attends its prefix
``[0, a)`` fully and ``[a, b)`` as a causal square (slots: prefix and square of the early
chunk, then of the late chunk); touching early and late chunks (``d = 1``, the middle
rank, empty chunks between) count as one chunk. Non-causal: all local rows of a sequence
attend the whole sequence. Any degree runs. Memory: the gathered K/V is kept for backward.
"""

from __future__ import annotations

import numpy as np

from fcp_tune.modelcfg import ModelConfig
from fcp_tune.schemes.base import Blocks, CommStep, Scheme, dkv_bytes, kv_bytes, make_blocks
from fcp_tune.schemes.layout import ShardLayout


def _slots(*xs: np.ndarray) -> np.ndarray:
    """Broadcast one array per slot and stack them along the last (slot) axis."""
    return np.concatenate(np.broadcast_arrays(*xs), axis=-1)


class AllGather(Scheme):
    """See the module docstring."""

    name = "allgather"
    ops = ("all_gather", "reduce_scatter")
    lockstep = False

    def blocks(self, layout: ShardLayout, causal: bool) -> Blocks:
        sp = layout.spans
        e0, e1, l0, l1 = (a.T[None, :, :, None] for a in (sp.e0, sp.e1, sp.l0, sp.l1))
        off = layout.offsets.T[None, :, :, None]
        base = np.asarray(layout.cu_seqlens[:-1], dtype=np.int64)[None, None, :, None]
        if not causal:
            length = np.asarray(layout.seqlens, dtype=np.int64)[None, None, :, None]
            return make_blocks(off, off + (e1 - e0) + (l1 - l0), base, base + length, False)
        merged = e1 == l0
        a1, b1 = e0, np.where(merged, l1, e1)
        a2, b2 = np.where(merged, 0, l0), np.where(merged, 0, l1)
        row1, row2 = off, off + (e1 - e0)
        n1, n2 = b1 - a1, b2 - a2
        return make_blocks(
            _slots(row1, row1, row2, row2),
            _slots(row1 + n1, row1 + n1, row2 + n2, row2 + n2),
            _slots(base, base + a1, base, base + a2),
            _slots(base + a1, base + b1, base + a2, base + b2),
            np.array([False, True, False, True]),
        )

    def comm_steps(self, degree: int, width: float, model: ModelConfig) -> tuple[CommStep, ...]:
        if degree == 1:
            return ()
        return (
            CommStep("forward", "all_gather", degree * width * kv_bytes(model), what="K/V of the group"),
            CommStep("backward", "reduce_scatter", degree * width * dkv_bytes(model), what="dK/dV home"),
        )

    def kept_bytes(self, degree: int, counts: np.ndarray, model: ModelConfig) -> float:
        if degree == 1:
            return 0.0
        return degree * float(np.max(counts)) * model.kv_bytes_per_token()
