"""All-gather context-parallel attention (Megatron/TransformerEngine "all_gather" style).

Forward: gather every sequence's K/V inside the group (one padded all-gather for the
whole packed batch), then compute the blocks of :mod:`fcp_tune.schemes.allgather` (each
local query chunk against its causal prefix).
Backward: compute dK/dV for the whole gathered K/V locally and reduce-scatter them home.
Memory: the gathered K/V of the group's batch is kept for the backward pass.
"""

from __future__ import annotations

import torch

from fcp_tune.attention.blocks import backward_passes, forward_passes, rank_passes
from fcp_tune.attention.comm import GroupInfo, gather_global, scatter_sum_home
from fcp_tune.attention.kernels import acc_dtype
from fcp_tune.attention.merge import new_accumulators
from fcp_tune.schemes.layout import ShardLayout


class AllGatherAttention(torch.autograd.Function):
    """Autograd function; call through :func:`fcp_tune.attention.cp_attention`."""

    @staticmethod
    def forward(ctx, q, k, v, layout: ShardLayout, info: GroupInfo, causal: bool, scale: float):
        dk_dim = k.shape[-1]
        full, idx = gather_global(torch.cat([k, v], -1), layout, info)
        k_full, v_full = full[..., :dk_dim], full[..., dk_dim:]
        (passes,) = rank_passes("allgather", layout, causal, info.rank)
        out_acc, lse_acc = new_accumulators(q.shape[0], q.shape[1], v.shape[-1], acc_dtype(q.dtype), q.device)
        forward_passes(passes, q, k_full, v_full, out_acc, lse_acc, scale)
        out = out_acc.to(q.dtype)
        ctx.save_for_backward(q, k_full, v_full, out, lse_acc)
        ctx.meta = (layout, info, passes, scale, idx)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k_full, v_full, out, lse = ctx.saved_tensors
        layout, info, passes, scale, idx = ctx.meta
        adt = acc_dtype(q.dtype)
        dq = torch.zeros(q.shape, dtype=adt, device=q.device)
        dkv_full = torch.zeros(
            (k_full.shape[0], k_full.shape[1], k_full.shape[-1] + v_full.shape[-1]), dtype=adt, device=q.device
        )
        dk_dim = k_full.shape[-1]
        backward_passes(passes, dout, q, k_full, v_full, out, lse, scale, dq, dkv_full[..., :dk_dim], dkv_full[..., dk_dim:])
        mine = scatter_sum_home(dkv_full, idx, layout, info)
        dk, dv = mine[..., :dk_dim], mine[..., dk_dim:]
        return dq.to(q.dtype), dk.to(q.dtype), dv.to(q.dtype), None, None, None, None
