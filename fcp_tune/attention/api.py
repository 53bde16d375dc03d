"""Public context-parallel attention API: ``shard``, ``unshard``, ``cp_attention``.

Tensors are packed variable-length ``(T, H, D)``; ``cu_seqlens`` is the *global*
cumulative-length vector ``(B+1,)`` of the sequences the group processes. Each sequence is
cut into ``2d`` chunks for a group of ``d`` ranks and rank ``i`` holds chunks ``i`` and
``2d-1-i`` (see :mod:`fcp_tune.schemes.layout`).

``group`` defaults to :data:`WORLD`, the whole world, spelled out. ``None`` means no group:
this process alone. A group of size 1, whatever is passed for it (``None``, a one-rank
process group), computes locally and never communicates, so a degree-1 group of a plan can
never wait on ranks outside it.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence, Union

import torch

from fcp_tune.attention.allgather import AllGatherAttention
from fcp_tune.attention.comm import WORLD, GroupArg, GroupInfo, gather_global, group_info, rank_index, scatter_sum_home
from fcp_tune.attention.kernels import default_scale
from fcp_tune.attention.ring import RingAttention
from fcp_tune.attention.ulysses import UlyssesAttention
from fcp_tune.schemes import get_scheme
from fcp_tune.schemes import DEFAULT_SCHEME
from fcp_tune.schemes.layout import ShardLayout, shard_layout, validate_cu_seqlens

# The autograd function that executes each scheme of :mod:`fcp_tune.schemes`.
FUNCTIONS = {"allgather": AllGatherAttention, "ring": RingAttention, "ulysses": UlyssesAttention}
CuSeqlens = Union[torch.Tensor, Sequence[int]]


def _as_tuple(cu_seqlens: CuSeqlens) -> tuple[int, ...]:
    if isinstance(cu_seqlens, torch.Tensor):
        if cu_seqlens.dim() != 1:
            raise ValueError(f"cu_seqlens must be 1-D, got shape {tuple(cu_seqlens.shape)}")
        if cu_seqlens.is_floating_point():
            raise ValueError("cu_seqlens must hold integers")
        return tuple(int(x) for x in cu_seqlens.tolist())
    return tuple(int(x) for x in cu_seqlens)


@functools.lru_cache(maxsize=128)
def _layout(cu: tuple[int, ...], degree: int) -> ShardLayout:
    # Pure and immutable: every layer of a step reuses the same layout.
    return shard_layout(cu, degree)


def _resolve(
    cu_seqlens: CuSeqlens, group: GroupArg, total: Optional[int] = None
) -> tuple[tuple[int, ...], GroupInfo, ShardLayout]:
    """Validated ``cu_seqlens`` (ending at ``total`` when given), this rank's group, the layout."""
    cu = _as_tuple(cu_seqlens)
    validate_cu_seqlens(cu, total)
    info = group_info(group)
    return cu, info, _layout(cu, info.size)


def _check_local(name: str, x: torch.Tensor, cu: tuple[int, ...], info: GroupInfo, layout: ShardLayout) -> None:
    """``x`` must hold exactly this rank's share of the batch."""
    if x.shape[0] != layout.counts[info.rank]:
        raise ValueError(
            f"{name} has {x.shape[0]} tokens but cu_seqlens (total {cu[-1]}) gives rank {info.rank} "
            f"of {info.size} exactly {layout.counts[info.rank]}"
        )


def layout_for(cu_seqlens: CuSeqlens, group: GroupArg = WORLD) -> ShardLayout:
    """The :class:`ShardLayout` of this batch for ``group`` (validated)."""
    return _resolve(cu_seqlens, group)[2]


def shard(x: torch.Tensor, cu_seqlens: CuSeqlens, group: GroupArg = WORLD) -> torch.Tensor:
    """This rank's share of every sequence of the packed ``x`` (``(T, ...)``), head-tail order.

    Differentiable (an index select). No communication.
    """
    _, info, layout = _resolve(cu_seqlens, group, total=x.shape[0])
    return x.index_select(0, rank_index(layout, info.rank, x.device))


class _Unshard(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_local, layout: ShardLayout, info: GroupInfo):
        out, idx = gather_global(x_local, layout, info)
        ctx.meta = (layout, info, idx)
        return out

    @staticmethod
    def backward(ctx, grad):
        layout, info, idx = ctx.meta
        # Every rank holds the full tensor: the local gradient sums the ranks' gradients.
        return scatter_sum_home(grad, idx, layout, info), None, None


def unshard(x_local: torch.Tensor, cu_seqlens: CuSeqlens, group: GroupArg = WORLD) -> torch.Tensor:
    """Inverse of :func:`shard`: every rank of the group gets the full packed tensor.

    Differentiable: the gradient of the local part is the sum over ranks of their
    gradients at those positions (each rank's copy is treated as its own output).
    """
    cu, info, layout = _resolve(cu_seqlens, group)
    _check_local("x_local", x_local, cu, info, layout)
    return _Unshard.apply(x_local, layout, info)


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 3:
            raise ValueError(f"{name} must be packed (T, H, D), got shape {tuple(t.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    if not q.dtype.is_floating_point:
        raise ValueError(f"q, k, v must be floating point, got {q.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v devices differ: {q.device}, {k.device}, {v.device}")
    if not (q.shape[0] == k.shape[0] == v.shape[0]):
        raise ValueError(f"q, k, v token counts differ: {q.shape[0]}, {k.shape[0]}, {v.shape[0]}")
    if v.shape[2] < 1 or q.shape[2] < 1:
        raise ValueError(f"head dims must be >= 1, got q/k {q.shape[2]}, v {v.shape[2]}")
    if k.shape[1] != v.shape[1]:
        raise ValueError(f"k and v head counts differ: {k.shape[1]} vs {v.shape[1]}")
    if k.shape[1] == 0 or q.shape[1] % k.shape[1] != 0:
        raise ValueError(f"q heads ({q.shape[1]}) must be a multiple of k/v heads ({k.shape[1]})")
    if q.shape[2] != k.shape[2]:
        raise ValueError(f"q and k head dims differ: {q.shape[2]} vs {k.shape[2]}")


def cp_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: CuSeqlens,
    group: GroupArg = WORLD,
    causal: bool = True,
    scheme: str = DEFAULT_SCHEME,
    scale: Optional[float] = None,
) -> torch.Tensor:
    """Exact variable-length attention over sequences split across a context-parallel group.

    Args:
        q: this rank's query tokens ``(T_local, H_q, D)``, as produced by :func:`shard`.
        k: this rank's key tokens ``(T_local, H_kv, D)``; ``H_q % H_kv == 0`` (GQA).
        v: this rank's value tokens ``(T_local, H_kv, Dv)``; ``Dv`` may differ from ``D``
            (MLA, e.g. 192/128) in every scheme.
        cu_seqlens: global cumulative sequence lengths ``(B+1,)`` of the group's batch.
        group: the context-parallel group, any size ``d >= 1``. Default :data:`WORLD`: the
            whole world (a single process when ``torch.distributed`` is not initialised).
            ``None`` or a one-rank group: this process alone, no communication. Every rank
            of the group must call this, even one that holds no tokens.
        causal: causal (decoder) attention; positions are each sequence's own.
        scheme: a name of :data:`fcp_tune.schemes.SCHEMES`: ``"allgather"`` (gather K/V,
            reduce-scatter dK/dV), ``"ring"`` (rotate K/V point-to-point, overlapping transfer
            with compute) or ``"ulysses"`` (all-to-all tokens <-> heads; the group size must
            divide ``H_kv``, hence ``H_q``). Same result.
        scale: softmax scale, default ``1/sqrt(D)`` (the query/key head dim).

    Returns:
        The attention output for the local queries, ``(T_local, H_q, Dv)``, dtype of q.

    Shapes, dtypes and ``cu_seqlens`` are checked before any communication, so a bad call
    raises the same ``ValueError`` on every rank instead of leaving peers waiting.
    """
    spec = get_scheme(scheme)
    _check_qkv(q, k, v)
    cu, info, layout = _resolve(cu_seqlens, group)
    _check_local("q", q, cu, info, layout)
    spec.check_degree(info.size, q.shape[1], k.shape[1])
    scale = default_scale(q.shape[-1]) if scale is None else float(scale)
    return FUNCTIONS[spec.name].apply(q, k, v, layout, info, causal, scale)
