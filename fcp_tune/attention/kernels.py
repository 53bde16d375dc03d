"""Local attention kernels behind one small interface: blocks of (query rows, key rows).

The context-parallel algorithms only ever ask for two kinds of block: *full* (every query
sees every key) and *causal square* (query and key ranges are the same positions, so the
causal mask is the ordinary lower triangle). Asking only for those sidesteps the
top-left vs bottom-right alignment question for ``Lq != Lk`` entirely.

A call covers many independent segments at once (one per sequence): segment ``i`` attends
``q[q_ranges[i]]`` to ``k/v[k_ranges[i]]``. Results come back packed in segment order.
``lse`` is natural-log-sum-exp of the scaled scores, shape ``(H, rows)``, in the
accumulation dtype (float64 for float64 inputs, float32 otherwise).

Back ends:
- CPU: ``aten._scaled_dot_product_flash_attention_for_cpu`` (fused, returns the lse, supports
  GQA natively), one call per segment on views.
- CUDA, fp16/bf16: ``aten._flash_attention_forward`` varlen, one call for all segments.
- anything else (CUDA fp32/fp64, other devices): a math kernel (matmul + logsumexp).
No kernel is ever called with an empty segment.

Value head dim ``Dv`` may differ from the query/key head dim ``D`` (DeepSeek-style MLA, e.g.
192/128). The fused kernels need one head size, so the smaller side is zero-padded to
``max(D, Dv)`` (zero value columns give zero output columns; zero query/key columns leave the
scores unchanged, the scale being explicit) and the padding is sliced off the results.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import torch

from fcp_tune.attention.merge import ranges_to_rows

Range = tuple[int, int]


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype partial results are merged in: float64 stays float64, the rest use float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_ranges(q_ranges: Sequence[Range], k_ranges: Sequence[Range], causal: bool) -> None:
    if len(q_ranges) != len(k_ranges):
        raise ValueError("q_ranges and k_ranges must have the same length")
    for (qs, qe), (ks, ke) in zip(q_ranges, k_ranges):
        if qe <= qs or ke <= ks:
            raise ValueError("attention kernels are never called with an empty segment")
        if causal and qe - qs != ke - ks:
            raise ValueError("causal blocks must be square (same query and key length)")


def _to_bhld(x: torch.Tensor) -> torch.Tensor:
    """(L, H, D) -> (1, H, L, D) view."""
    return x.transpose(0, 1).unsqueeze(0)


def _use_flash_cuda(q: torch.Tensor, v: torch.Tensor) -> bool:
    return q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and max(q.shape[-1], v.shape[-1]) <= 256


def _pad_dim(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` with its last dimension zero-padded to ``dim`` (``x`` itself when already that wide)."""
    if x.shape[-1] == dim:
        return x
    return torch.nn.functional.pad(x, (0, dim - x.shape[-1]))


def _same_dim(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v padded to one head size ``max(D, Dv)`` for the fused kernels."""
    d = max(q.shape[-1], v.shape[-1])
    return _pad_dim(q, d), _pad_dim(k, d), _pad_dim(v, d)


def _cu(ranges: Sequence[Range], device: torch.device) -> tuple[torch.Tensor, int]:
    lens = [e - s for s, e in ranges]
    cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lens, dtype=torch.int32).cumsum(0)
    return cu.to(device), max(lens)


def block_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_ranges: Sequence[Range],
    k_ranges: Sequence[Range],
    causal: bool,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attend each query segment to its key segment.

    Args:
        q: ``(Tq, H, D)``; k: ``(Tk, H_kv, D)``; v: ``(Tk, H_kv, Dv)`` with ``H % H_kv == 0``.
        q_ranges, k_ranges: one ``[start, end)`` row range per segment, none empty.
        causal: causal-square blocks (each segment's query and key ranges have equal length).
        scale: softmax scale.

    Returns:
        ``out`` of shape ``(rows, H, Dv)`` in q's dtype and ``lse`` of shape ``(H, rows)`` in the
        accumulation dtype, where rows is the sum of query segment lengths.
    """
    _check_ranges(q_ranges, k_ranges, causal)
    dv_dim = v.shape[-1]
    if q.device.type == "cpu" or _use_flash_cuda(q, v):
        q, k, v = _same_dim(q, k, v)
    if q.device.type == "cpu":
        outs, lses = [], []
        op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
        for (qs, qe), (ks, ke) in zip(q_ranges, k_ranges):
            o, l = op(_to_bhld(q[qs:qe]), _to_bhld(k[ks:ke]), _to_bhld(v[ks:ke]), 0.0, causal, scale=scale)
            outs.append(o[0].transpose(0, 1))
            lses.append(l[0])
        out = outs[0] if len(outs) == 1 else torch.cat(outs, 0)
        lse = lses[0] if len(lses) == 1 else torch.cat(lses, 1)
        return out[..., :dv_dim], lse.to(acc_dtype(q.dtype))
    if _use_flash_cuda(q, v):
        qr, kr = ranges_to_rows(q_ranges, q.device), ranges_to_rows(k_ranges, q.device)
        cu_q, max_q = _cu(q_ranges, q.device)
        cu_k, max_k = _cu(k_ranges, q.device)
        out, lse, _, _, _ = torch.ops.aten._flash_attention_forward(
            q.index_select(0, qr), k.index_select(0, kr), v.index_select(0, kr),
            cu_q, cu_k, max_q, max_k, 0.0, causal, False, scale=scale,
        )
        return out[..., :dv_dim], lse.float().reshape(q.shape[1], -1)
    return _math_forward(q, k, v, q_ranges, k_ranges, causal, scale)


def block_backward(
    dout: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    q_ranges: Sequence[Range],
    k_ranges: Sequence[Range],
    causal: bool,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of one block call, given the *final* (merged) ``out`` and ``lse`` rows.

    With the final softmax statistics the per-block gradients add up to the exact gradient
    of the merged attention (the FlashAttention backward identity), so callers just sum.

    Args:
        dout, out: ``(rows, H, Dv)`` packed like :func:`block_forward`'s output.
        lse: ``(H, rows)`` final log-sum-exp of those rows.

    Returns:
        ``dq`` ``(rows, H, D)``, ``dk`` ``(Tk, H_kv, D)`` and ``dv`` ``(Tk, H_kv, Dv)`` (zero outside the key
        ranges; overlapping key ranges accumulate), all in the accumulation dtype.
    """
    _check_ranges(q_ranges, k_ranges, causal)
    adt = acc_dtype(q.dtype)
    d_qk, d_v = q.shape[-1], v.shape[-1]
    if q.device.type == "cpu" or _use_flash_cuda(q, v):
        dq, dk, dv = _fused_backward(dout, q, k, v, out, lse, q_ranges, k_ranges, causal, scale)
        return dq[..., :d_qk], dk[..., :d_qk], dv[..., :d_v]
    dk = torch.zeros(k.shape, dtype=adt, device=k.device)
    dv = torch.zeros(v.shape, dtype=adt, device=v.device)
    return _math_backward(dout, q, k, v, out, lse, q_ranges, k_ranges, causal, scale, dk, dv)


def accumulate_backward(
    grads: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    dout: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    q_ranges: Sequence[Range],
    k_ranges: Sequence[Range],
    causal: bool,
    scale: float,
) -> None:
    """:func:`block_backward`, added in place into ``grads = (dq, dk, dv)`` (accumulation dtype;
    views are fine), with ``dout``, ``out`` and ``lse`` indexed like ``q`` (all of its rows, not
    packed per block).

    On CPU every segment's kernel gradients are added straight into the row slices of the
    accumulators: no per-block packing of ``dout``/``out``/``lse``, no zeroed full-size
    ``dk``/``dv`` per call (what the packed interface costs the ring and all-gather schemes).
    Elsewhere it packs and calls :func:`block_backward`.
    """
    dq, dk, dv = grads
    if q.device.type != "cpu":
        rows = ranges_to_rows(q_ranges, q.device)
        dq_b, dk_b, dv_b = block_backward(
            dout.index_select(0, rows), q, k, v, out.index_select(0, rows), lse.index_select(1, rows),
            q_ranges, k_ranges, causal, scale,
        )
        dq.index_add_(0, rows, dq_b)
        dk += dk_b
        dv += dv_b
        return
    _check_ranges(q_ranges, k_ranges, causal)
    d_qk, d_v = q.shape[-1], v.shape[-1]
    q, k, v = _same_dim(q, k, v)
    dout, out = _pad_dim(dout, q.shape[-1]), _pad_dim(out, q.shape[-1])
    lse_k = lse.to(torch.float32) if q.dtype != torch.float64 else lse
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
    for (qs, qe), (ks, ke) in zip(q_ranges, k_ranges):
        g = op(
            _to_bhld(dout[qs:qe]), _to_bhld(q[qs:qe]), _to_bhld(k[ks:ke]), _to_bhld(v[ks:ke]),
            _to_bhld(out[qs:qe]), lse_k[:, qs:qe].unsqueeze(0), 0.0, causal, scale=scale,
        )
        dq[qs:qe] += g[0][0].transpose(0, 1)[..., :d_qk]
        dk[ks:ke] += g[1][0].transpose(0, 1)[..., :d_qk]
        dv[ks:ke] += g[2][0].transpose(0, 1)[..., :d_v]


def bound_backward(
    dout: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    q_ranges: Sequence[Range],
    k_ranges: Sequence[Range],
    causal: bool,
    scale: float,
) -> Callable[[], None]:
    """The backward of one block as the attention schemes run it, as a call with no arguments.

    :func:`accumulate_backward` into dQ/dK/dV accumulators (accumulation dtype) allocated once
    here, so repeated calls time the kernel and the in-place adds and nothing else. The
    profiler times this, not :func:`block_backward`, whose packed results are allocated and
    zeroed per call (2-8 % more CPU time on CPU, most on small blocks:
    ``benchmarks/profiler_backward.py``).
    """
    adt = acc_dtype(q.dtype)
    grads = (torch.zeros(q.shape, dtype=adt, device=q.device), torch.zeros(k.shape, dtype=adt, device=k.device),
             torch.zeros(v.shape, dtype=adt, device=v.device))
    return functools.partial(accumulate_backward, grads, dout, q, k, v, out, lse, q_ranges, k_ranges, causal, scale)


def _fused_backward(dout, q, k, v, out, lse, q_ranges, k_ranges, causal, scale):
    """:func:`block_backward` on the fused kernels, at head size ``max(D, Dv)`` (padded results)."""
    adt = acc_dtype(q.dtype)
    q, k, v = _same_dim(q, k, v)
    dout, out = _pad_dim(dout, q.shape[-1]), _pad_dim(out, q.shape[-1])
    dk = torch.zeros(k.shape, dtype=adt, device=k.device)
    dv = torch.zeros(v.shape, dtype=adt, device=v.device)
    if q.device.type == "cpu":
        dqs = []
        op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
        row = 0
        lse_k = lse.to(torch.float32) if q.dtype != torch.float64 else lse
        for (qs, qe), (ks, ke) in zip(q_ranges, k_ranges):
            n = qe - qs
            g = op(
                _to_bhld(dout[row : row + n]), _to_bhld(q[qs:qe]), _to_bhld(k[ks:ke]), _to_bhld(v[ks:ke]),
                _to_bhld(out[row : row + n]), lse_k[:, row : row + n].unsqueeze(0), 0.0, causal, scale=scale,
            )
            dqs.append(g[0][0].transpose(0, 1).to(adt))
            dk[ks:ke] += g[1][0].transpose(0, 1)
            dv[ks:ke] += g[2][0].transpose(0, 1)
            row += n
        return (dqs[0] if len(dqs) == 1 else torch.cat(dqs, 0)), dk, dv
    qr, kr = ranges_to_rows(q_ranges, q.device), ranges_to_rows(k_ranges, q.device)
    cu_q, max_q = _cu(q_ranges, q.device)
    cu_k, max_k = _cu(k_ranges, q.device)
    empty = torch.zeros(2, dtype=torch.uint64, device=q.device)
    dq, dks, dvs = torch.ops.aten._flash_attention_backward(
        dout.contiguous(), q.index_select(0, qr), k.index_select(0, kr), v.index_select(0, kr),
        out.contiguous(), lse.float().contiguous(), cu_q, cu_k, max_q, max_k, 0.0, causal,
        empty, empty, scale=scale,
    )
    dk.index_add_(0, kr, dks.to(adt))
    dv.index_add_(0, kr, dvs.to(adt))
    return dq.to(adt), dk, dv


def _scores(q: torch.Tensor, k: torch.Tensor, causal: bool, scale: float) -> torch.Tensor:
    """Scaled scores ``(H, Lq, Lk)`` in the accumulation dtype, GQA heads expanded, masked."""
    adt = acc_dtype(q.dtype)
    rep = q.shape[1] // k.shape[1]
    kk = k.to(adt).repeat_interleave(rep, dim=1) if rep > 1 else k.to(adt)
    s = torch.einsum("qhd,khd->hqk", q.to(adt), kk) * scale
    if causal:
        n = q.shape[0]
        mask = torch.ones(n, n, dtype=torch.bool, device=q.device).triu_(1)
        s = s.masked_fill(mask, float("-inf"))
    return s


def _math_forward(q, k, v, q_ranges, k_ranges, causal, scale):
    adt = acc_dtype(q.dtype)
    rep = q.shape[1] // k.shape[1]
    outs, lses = [], []
    for (qs, qe), (ks, ke) in zip(q_ranges, k_ranges):
        s = _scores(q[qs:qe], k[ks:ke], causal, scale)
        lse = torch.logsumexp(s, dim=-1)
        p = torch.exp(s - lse.unsqueeze(-1))
        vv = v[ks:ke].to(adt).repeat_interleave(rep, dim=1) if rep > 1 else v[ks:ke].to(adt)
        outs.append(torch.einsum("hqk,khd->qhd", p, vv).to(q.dtype))
        lses.append(lse)
    return torch.cat(outs, 0), torch.cat(lses, 1)


def _math_backward(dout, q, k, v, out, lse, q_ranges, k_ranges, causal, scale, dk, dv):
    adt = acc_dtype(q.dtype)
    rep = q.shape[1] // k.shape[1]
    hkv = k.shape[1]
    dqs = []
    row = 0
    for (qs, qe), (ks, ke) in zip(q_ranges, k_ranges):
        n = qe - qs
        s = _scores(q[qs:qe], k[ks:ke], causal, scale)
        p = torch.exp(s - lse[:, row : row + n].to(adt).unsqueeze(-1))
        vv = v[ks:ke].to(adt).repeat_interleave(rep, dim=1) if rep > 1 else v[ks:ke].to(adt)
        kk = k[ks:ke].to(adt).repeat_interleave(rep, dim=1) if rep > 1 else k[ks:ke].to(adt)
        do = dout[row : row + n].to(adt)
        o = out[row : row + n].to(adt)  # the final (merged) output, not this block's
        dvv = torch.einsum("hqk,qhd->khd", p, do)
        dp = torch.einsum("qhd,khd->hqk", do, vv)
        delta = (do * o).sum(-1).transpose(0, 1).unsqueeze(-1)
        ds = p * (dp - delta) * scale
        dqs.append(torch.einsum("hqk,khd->qhd", ds, kk))
        dkk = torch.einsum("hqk,qhd->khd", ds, q[qs:qe].to(adt))
        dk[ks:ke] += dkk.reshape(ke - ks, hkv, rep, -1).sum(2)
        dv[ks:ke] += dvv.reshape(ke - ks, hkv, rep, -1).sum(2)
        row += n
    return torch.cat(dqs, 0), dk, dv


def default_scale(head_dim: int) -> float:
    """The usual ``1 / sqrt(head_dim)`` softmax scale."""
    return 1.0 / math.sqrt(head_dim)
