"""Ulysses context-parallel attention (DeepSpeed-Ulysses style): all-to-all from tokens to heads.

Forward: one all-to-all gives this rank every token of the group (global packed order) for
its slice of the heads (query heads ``[r H_q/d, (r+1) H_q/d)``, K/V heads
``[r H_kv/d, (r+1) H_kv/d)``); it computes the blocks of :mod:`fcp_tune.schemes.ulysses`
(each whole sequence, causal square or full) and a second all-to-all returns the output to
the token layout. Backward: dO to heads, the local backward, dQ/dK/dV back (accumulation
dtype). The group size must divide ``H_kv`` (hence ``H_q``), checked by
:func:`fcp_tune.attention.cp_attention`. The zigzag token layout is the same as the other
schemes', so ``shard``/``unshard`` do not change.
"""

from __future__ import annotations

import torch

from fcp_tune.attention.blocks import backward_passes, forward_passes, rank_passes
from fcp_tune.attention.comm import GroupInfo, all_to_all_rows, rank_index
from fcp_tune.attention.kernels import acc_dtype
from fcp_tune.attention.merge import new_accumulators
from fcp_tune.schemes.layout import ShardLayout


def _order(layout: ShardLayout, device: torch.device) -> torch.Tensor:
    """Global positions of the rows an all-to-all delivers: every rank's local tokens, rank by rank."""
    return torch.cat([rank_index(layout, r, device) for r in range(layout.degree)])


def to_heads(xs: list[torch.Tensor], layout: ShardLayout, info: GroupInfo, order: torch.Tensor) -> list[torch.Tensor]:
    """Local ``(T_r, H_i, D_i)`` tensors -> this rank's head slices ``(T, H_i/d, D_i)`` of the whole batch."""
    d, n = info.size, xs[0].shape[0]
    widths = [x.shape[1] // d * x.shape[2] for x in xs]
    parts = [x.reshape(n, d, w) for x, w in zip(xs, widths)]
    send = torch.cat(parts, -1).transpose(0, 1).reshape(d * n, sum(widths))
    got = all_to_all_rows(send, (n,) * d, layout.counts, info)
    full = got.new_empty(got.shape)
    full.index_copy_(0, order, got)
    return [c.reshape(full.shape[0], x.shape[1] // d, x.shape[2]) for c, x in zip(full.split(widths, -1), xs)]


def to_tokens(xs: list[torch.Tensor], layout: ShardLayout, info: GroupInfo, order: torch.Tensor) -> list[torch.Tensor]:
    """Inverse of :func:`to_heads`: head slices ``(T, h_i, D_i)`` -> local tokens ``(T_r, d h_i, D_i)``."""
    d, n = info.size, layout.counts[info.rank]
    widths = [x.shape[1] * x.shape[2] for x in xs]
    parts = [x.reshape(x.shape[0], w) for x, w in zip(xs, widths)]
    send = torch.cat(parts, -1).index_select(0, order)
    got = all_to_all_rows(send, layout.counts, (n,) * d, info).reshape(d, n, sum(widths)).transpose(0, 1)
    return [c.reshape(n, d * x.shape[1], x.shape[2]) for c, x in zip(got.split(widths, -1), xs)]


class UlyssesAttention(torch.autograd.Function):
    """Autograd function; call through :func:`fcp_tune.attention.cp_attention`."""

    @staticmethod
    def forward(ctx, q, k, v, layout: ShardLayout, info: GroupInfo, causal: bool, scale: float):
        order = _order(layout, q.device)
        qh, kh, vh = to_heads([q, k, v], layout, info, order)
        (passes,) = rank_passes("ulysses", layout, causal, info.rank)
        out_h, lse = new_accumulators(qh.shape[0], qh.shape[1], vh.shape[-1], acc_dtype(q.dtype), q.device)
        forward_passes(passes, qh, kh, vh, out_h, lse, scale)
        out_h = out_h.to(q.dtype)
        ctx.save_for_backward(qh, kh, vh, out_h, lse, order)
        ctx.meta = (layout, info, passes, scale)
        return to_tokens([out_h], layout, info, order)[0]

    @staticmethod
    def backward(ctx, dout):
        qh, kh, vh, out_h, lse, order = ctx.saved_tensors
        layout, info, passes, scale = ctx.meta
        (dout_h,) = to_heads([dout.contiguous()], layout, info, order)
        adt = acc_dtype(qh.dtype)
        dq = torch.zeros(qh.shape, dtype=adt, device=qh.device)
        dk = torch.zeros(kh.shape, dtype=adt, device=qh.device)
        dv = torch.zeros(vh.shape, dtype=adt, device=qh.device)
        backward_passes(passes, dout_h, qh, kh, vh, out_h, lse, scale, dq, dk, dv)
        dq, dk, dv = to_tokens([dq, dk, dv], layout, info, order)
        dt = qh.dtype
        return dq.to(dt), dk.to(dt), dv.to(dt), None, None, None, None
