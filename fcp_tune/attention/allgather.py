"""All-gather context-parallel attention (Megatron/TransformerEngine "all_gather" style).

Forward: gather every sequence's K/V inside the group (one padded all-gather for the
whole packed batch), then attend each local query chunk to its causal prefix.
Backward: compute dK/dV for the whole gathered K/V locally and reduce-scatter them home.
Memory: the gathered K/V of the group's batch is kept for the backward pass.
"""

from __future__ import annotations

import torch

from fcp_tune.attention.blocks import allgather_passes
from fcp_tune.attention.comm import GroupInfo, gather_global, scatter_sum_home
from fcp_tune.attention.kernels import acc_dtype, block_backward, block_forward
from fcp_tune.attention.merge import merge_into, new_accumulators, ranges_to_rows
from fcp_tune.layout import ShardLayout


class AllGatherAttention(torch.autograd.Function):
    """Autograd function; call through :func:`fcp_tune.attention.cp_attention`."""

    @staticmethod
    def forward(ctx, q, k, v, layout: ShardLayout, info: GroupInfo, causal: bool, scale: float):
        dk_dim = k.shape[-1]
        full, idx = gather_global(torch.cat([k, v], -1), layout, info)
        k_full, v_full = full[..., :dk_dim], full[..., dk_dim:]
        passes = allgather_passes(layout, info.rank, causal)
        out_acc, lse_acc = new_accumulators(q.shape[0], q.shape[1], v.shape[-1], acc_dtype(q.dtype), q.device)
        for p in passes:
            o, l = block_forward(q, k_full, v_full, p.q_ranges, p.k_ranges, p.causal, scale)
            merge_into(out_acc, lse_acc, ranges_to_rows(p.q_ranges, q.device), o, l)
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
        for p in passes:
            rows = ranges_to_rows(p.q_ranges, q.device)
            dq_b, dk_b, dv_b = block_backward(
                dout.index_select(0, rows), q, k_full, v_full, out.index_select(0, rows),
                lse.index_select(1, rows), p.q_ranges, p.k_ranges, p.causal, scale,
            )
            dq.index_add_(0, rows, dq_b)
            dkv_full[..., :dk_dim] += dk_b
            dkv_full[..., dk_dim:] += dv_b
        mine = scatter_sum_home(dkv_full, idx, layout, info)
        dk, dv = mine[..., :dk_dim], mine[..., dk_dim:]
        return dq.to(q.dtype), dk.to(q.dtype), dv.to(q.dtype), None, None, None, None
