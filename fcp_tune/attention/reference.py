"""Dense single-process float64 reference attention over a whole packed batch.

Independent of the kernels and of the context-parallel code: explicit scores, explicit
masks, ``softmax`` and autograd. Used by the tests and the parity demo.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: Sequence[int],
    causal: bool = True,
    scale: Optional[float] = None,
) -> torch.Tensor:
    """Packed varlen attention ``(T, H, D)`` in float64, one sequence at a time (differentiable)."""
    q, k, v = q.double(), k.double(), v.double()
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    rep = q.shape[1] // k.shape[1]
    outs = []
    for s in range(len(cu_seqlens) - 1):
        a, b = int(cu_seqlens[s]), int(cu_seqlens[s + 1])
        if b == a:
            continue
        qs = q[a:b].transpose(0, 1)
        ks = k[a:b].repeat_interleave(rep, dim=1).transpose(0, 1)
        vs = v[a:b].repeat_interleave(rep, dim=1).transpose(0, 1)
        scores = qs @ ks.transpose(-1, -2) * scale
        if causal:
            n = b - a
            scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        outs.append((torch.softmax(scores, dim=-1) @ vs).transpose(0, 1))
    if not outs:
        return q.new_zeros((0, q.shape[1], v.shape[-1]))
    return torch.cat(outs, 0)
