"""Ring (zigzag) scheme: K/V travel point-to-point around the group, ``d`` steps.

Buffers: queries are the rank's local tensor; at step ``t`` rank ``i`` holds the local K/V
of rank ``j = (i - t) mod d``. Causal: from itself a causal square over its own rows
(early then late chunk, still in position order); from ``j < i`` all its rows see ``j``'s
early chunk (``j``'s late chunk lies in its future); from ``j > i`` only its late chunk sees
both of ``j``'s chunks. Non-causal: all rows against all of ``j``'s rows. Any degree runs.

Communication: the K/V for step ``t + 1`` travels while step ``t`` computes; in backward
each block's dK/dV accumulator travels one step behind it and needs one more transfer
after the last step to arrive home. The group advances in lock step.
"""

from __future__ import annotations

import numpy as np

from fcp_tune.modelcfg import ModelConfig
from fcp_tune.schemes.base import Blocks, CommStep, Scheme, dkv_bytes, kv_bytes, make_blocks
from fcp_tune.schemes.layout import ShardLayout


class Ring(Scheme):
    """See the module docstring."""

    name = "ring"
    ops = ("p2p_ring",)
    lockstep = True

    def blocks(self, layout: ShardLayout, causal: bool) -> Blocks:
        d = layout.degree
        off = layout.offsets.T  # (d, S)
        n = layout.spans.tokens.T
        early = layout.spans.early.T
        i = np.arange(d)[None, :]
        t = np.arange(d)[:, None]
        j = (i - t) % d  # (steps, ranks): whose K/V rank i holds at step t
        own = (t == 0)[..., None] | np.zeros((1, d, 1), dtype=bool)
        q0, q1 = off[None], (off + n)[None]
        k0, k1 = off[j], (off + n)[j]
        if causal:
            before = (j < i)[..., None]
            q0 = np.where(own | before, q0, q0 + early[None])
            k1 = np.where(~own & before, k0 + early[j], k1)
        return make_blocks(q0[..., None], q1[..., None], k0[..., None], k1[..., None], (own & causal)[..., None])

    def comm_steps(self, degree: int, width: float, model: ModelConfig) -> tuple[CommStep, ...]:
        if degree == 1:
            return ()
        kv, dkv = width * kv_bytes(model), width * dkv_bytes(model)
        sends = tuple(range(degree - 1))
        return (
            CommStep("forward", "p2p_ring", kv, sends, "K/V for the next step"),
            CommStep("backward", "p2p_ring", kv, sends, "K/V for the next step"),
            CommStep("backward", "p2p_ring", dkv, tuple(range(1, degree)), "dK/dV one step behind"),
            CommStep("backward", "p2p_ring", dkv, (), "dK/dV home after the last step"),
        )
