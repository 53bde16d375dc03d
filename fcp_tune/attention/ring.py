"""Ring (zigzag) context-parallel attention: K/V travel point-to-point around the group.

Forward: at step ``t`` rank ``r`` holds the K/V of rank ``r - t`` and computes the blocks
:mod:`fcp_tune.schemes.ring` gives it for that step; it posts the transfer of
that block to ``r + 1`` (``batch_isend_irecv``) before computing on it, so the next block
arrives while this one is computed. Partial results merge by log-sum-exp (fp32).
Backward: K/V rotate again; each block's dK/dV accumulator travels with it, one step
behind, and arrives home after the last step. Works for every group size, odd ones too.
"""

from __future__ import annotations

import torch

from fcp_tune.attention.blocks import backward_passes, forward_passes, rank_passes
from fcp_tune.attention.comm import GroupInfo, RingExchange, _pad_rows
from fcp_tune.attention.kernels import acc_dtype
from fcp_tune.attention.merge import new_accumulators
from fcp_tune.schemes.layout import ShardLayout

_KV_TAG, _DKV_TAG = 11, 12


class RingAttention(torch.autograd.Function):
    """Autograd function; call through :func:`fcp_tune.attention.cp_attention`."""

    @staticmethod
    def forward(ctx, q, k, v, layout: ShardLayout, info: GroupInfo, causal: bool, scale: float):
        d, r = info.size, info.rank
        width = max(layout.counts)
        dk_dim = k.shape[-1]
        buf = _pad_rows(torch.cat([k, v], -1), width)
        out_acc, lse_acc = new_accumulators(q.shape[0], q.shape[1], v.shape[-1], acc_dtype(q.dtype), q.device)
        exch = RingExchange(info, _KV_TAG)
        communicate = d > 1 and width > 0
        steps = rank_passes("ring", layout, causal, r)
        for t in range(d):
            if communicate and t < d - 1:
                exch.start(buf)
            forward_passes(steps[t], q, buf[..., :dk_dim], buf[..., dk_dim:], out_acc, lse_acc, scale)
            if communicate and t < d - 1:
                buf = exch.wait()
        out = out_acc.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse_acc)
        ctx.meta = (layout, info, causal, scale)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        layout, info, causal, scale = ctx.meta
        d, r = info.size, info.rank
        width = max(layout.counts)
        dk_dim = k.shape[-1]
        adt = acc_dtype(q.dtype)
        dq = torch.zeros(q.shape, dtype=adt, device=q.device)
        buf = _pad_rows(torch.cat([k, v], -1), width)
        kv_exch, dkv_exch = RingExchange(info, _KV_TAG), RingExchange(info, _DKV_TAG)
        communicate = d > 1 and width > 0
        dkv = None
        steps = rank_passes("ring", layout, causal, r)
        for t in range(d):
            if communicate and t < d - 1:
                kv_exch.start(buf)
            dkv = torch.zeros(buf.shape, dtype=adt, device=q.device)
            backward_passes(steps[t], dout, q, buf[..., :dk_dim], buf[..., dk_dim:], out, lse, scale,
                            dq, dkv[..., :dk_dim], dkv[..., dk_dim:])
            if communicate:
                if t > 0:
                    dkv += dkv_exch.wait()  # contributions of the ranks this block visited before
                dkv_exch.start(dkv)
                if t < d - 1:
                    buf = kv_exch.wait()
        if communicate:
            dkv = dkv_exch.wait()  # our own block, home after a full turn
        mine = dkv[: layout.counts[r]]
        return (dq.to(q.dtype), mine[..., :dk_dim].to(q.dtype), mine[..., dk_dim:].to(q.dtype),
                None, None, None, None)
