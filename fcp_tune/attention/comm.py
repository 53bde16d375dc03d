"""The few collectives the context-parallel attention needs, for any group size.

Every rank of a group knows every rank's token count (it follows from ``cu_seqlens``), so
uneven messages are padded to the largest count and unpadded on arrival: no size
exchange, and the same code path on gloo and NCCL. A group of size 1 never communicates.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator, Optional, Union

import torch
import torch.distributed as dist

from fcp_tune.schemes.layout import ShardLayout

# torch 2.14 renames the tensor collectives; accept either (the one shim: the profiler's
# collective timings use these too, so they time the calls the attention makes).
all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
reduce_scatter_single = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor

# Seconds spent blocked in communication, for whoever opened a ``timed_comm`` block in
# this context (the executor's per-rank comm/busy split). Unset means nobody is counting.
_COMM_SECONDS: ContextVar[Optional[list]] = ContextVar("fcp_tune_comm_seconds", default=None)


@contextmanager
def timed_comm() -> Iterator[list]:
    """Count the seconds this context spends blocked in CP communication: ``acc[0]``."""
    acc = [0.0]
    token = _COMM_SECONDS.set(acc)
    try:
        yield acc
    finally:
        _COMM_SECONDS.reset(token)


def _account(t0: float) -> None:
    acc = _COMM_SECONDS.get()
    if acc is not None:
        acc[0] += time.perf_counter() - t0


class _World:
    """The type of :data:`WORLD` (one instance; compares by identity)."""

    _instance: Optional["_World"] = None

    def __new__(cls) -> "_World":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "fcp_tune.attention.WORLD"

    def __reduce__(self) -> str:
        return "WORLD"  # pickles back to this module's singleton


# The whole world (``dist.group.WORLD``, or this process alone when torch.distributed is not
# initialised): the explicit default of every ``group`` argument. ``None`` means no group at all
# (this process alone, never communicates), so passing ``None`` for a degree-1 group is safe.
WORLD = _World()
GroupArg = Union[dist.ProcessGroup, _World, None]


@dataclass(frozen=True)
class GroupInfo:
    """A process group and this rank's place in it (``group`` None means no communication)."""

    group: Optional[dist.ProcessGroup]
    rank: int
    size: int

    def global_rank(self, group_rank: int) -> int:
        return dist.get_global_rank(self.group, group_rank % self.size)


LOCAL = GroupInfo(None, 0, 1)


def group_info(group: GroupArg) -> GroupInfo:
    """Resolve ``group``: :data:`WORLD` (the default process group, or a single process when
    ``torch.distributed`` is not initialised), ``None`` (this process alone) or a process group.

    A group of size 1, however given, resolves to :data:`LOCAL`: it never communicates.
    """
    if group is None:
        return LOCAL
    if group is WORLD:
        if not (dist.is_available() and dist.is_initialized()):
            return LOCAL
        group = dist.group.WORLD
    size = dist.get_world_size(group)
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError("this process is not a member of the given group")
    return LOCAL if size == 1 else GroupInfo(group, rank, size)


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    if x.shape[0] == rows:
        return x.contiguous()
    pad = x.new_zeros((rows - x.shape[0],) + tuple(x.shape[1:]))
    return torch.cat([x, pad], 0)


def all_gather_varlen(x: torch.Tensor, counts: tuple[int, ...], info: GroupInfo) -> list[torch.Tensor]:
    """Every rank's ``x`` (rank r holds ``counts[r]`` rows), as a list indexed by group rank."""
    if info.size == 1:
        return [x]
    width = max(counts)
    if width == 0:
        return [x[:0] for _ in counts]
    out = x.new_empty((info.size * width,) + tuple(x.shape[1:]))
    t0 = time.perf_counter()
    all_gather_single(out, _pad_rows(x, width), group=info.group)
    _account(t0)
    return [out[r * width : r * width + c] for r, c in enumerate(counts)]


def reduce_scatter_varlen(parts: list[torch.Tensor], counts: tuple[int, ...], info: GroupInfo) -> torch.Tensor:
    """Sum over ranks of ``parts[r]`` delivered to rank r (``parts[r]`` has ``counts[r]`` rows)."""
    if info.size == 1:
        return parts[0]
    width = max(counts)
    mine = counts[info.rank]
    if width == 0:
        return parts[info.rank]
    send = torch.cat([_pad_rows(p, width) for p in parts], 0)
    out = send.new_empty((width,) + tuple(send.shape[1:]))
    t0 = time.perf_counter()
    reduce_scatter_single(out, send, group=info.group)
    _account(t0)
    return out[:mine]


def all_to_all_rows(
    send: torch.Tensor, send_rows: tuple[int, ...], recv_rows: tuple[int, ...], info: GroupInfo
) -> torch.Tensor:
    """``all_to_all_single`` over rows: ``send_rows[j]`` consecutive rows go to rank ``j``; returns the
    ``recv_rows[j]`` rows from every rank ``j``, in rank order (uneven and zero splits are fine)."""
    if info.size == 1:
        return send
    out = send.new_empty((sum(recv_rows),) + tuple(send.shape[1:]))
    if max(max(send_rows), max(recv_rows)) == 0:
        return out
    t0 = time.perf_counter()
    dist.all_to_all_single(out, send.contiguous(), list(recv_rows), list(send_rows), group=info.group)
    _account(t0)
    return out


def rank_index(layout: ShardLayout, rank: int, device: torch.device) -> torch.Tensor:
    """Global packed positions of ``rank``'s local tokens, in local order."""
    return torch.from_numpy(layout.global_indices(rank)).to(device)


def gather_global(x_local: torch.Tensor, layout: ShardLayout, info: GroupInfo) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The whole packed tensor on every rank (all-gather, then each rank's rows to their positions).

    Returns it with every rank's index (:func:`rank_index`) for :func:`scatter_sum_home`.
    """
    idx = [rank_index(layout, r, x_local.device) for r in range(info.size)]
    full = x_local.new_empty((layout.cu_seqlens[-1],) + tuple(x_local.shape[1:]))
    if info.size > 1 and min(layout.counts) == max(layout.counts) > 0:
        # no padding: the gathered rows are already every rank's rows in rank order (no re-packing copy)
        gathered = x_local.new_empty(full.shape)
        t0 = time.perf_counter()
        all_gather_single(gathered, x_local.contiguous(), group=info.group)
        _account(t0)
        full.index_copy_(0, torch.cat(idx), gathered)
        return full, idx
    parts = all_gather_varlen(x_local, layout.counts, info)
    if info.size == 1:
        full.index_copy_(0, idx[0], parts[0])
    else:
        full.index_copy_(0, torch.cat(idx), torch.cat(parts))
    return full, idx


def scatter_sum_home(full: torch.Tensor, idx: list[torch.Tensor], layout: ShardLayout, info: GroupInfo) -> torch.Tensor:
    """Inverse direction of :func:`gather_global`: each rank gets the sum over ranks of its rows."""
    if info.size > 1 and min(layout.counts) == max(layout.counts) > 0:
        # no padding: every rank's rows, in rank order, are already the reduce-scatter input
        out = full.new_empty((layout.counts[0],) + tuple(full.shape[1:]))
        t0 = time.perf_counter()
        reduce_scatter_single(out, full.index_select(0, torch.cat(idx)), group=info.group)
        _account(t0)
        return out
    return reduce_scatter_varlen([full.index_select(0, i) for i in idx], layout.counts, info)


class RingExchange:
    """Send a tensor to the next rank and receive one from the previous, asynchronously.

    ``start`` posts both transfers (``batch_isend_irecv``) and returns at once so the
    caller can compute while they fly; ``wait`` returns the received tensor.
    """

    def __init__(self, info: GroupInfo, tag: int) -> None:
        self.info = info
        self.tag = tag
        self._reqs: list = []
        self._buf: Optional[torch.Tensor] = None

    def start(self, send: torch.Tensor) -> None:
        send = send.contiguous()
        self._buf = torch.empty_like(send)
        nxt = self.info.global_rank(self.info.rank + 1)
        prv = self.info.global_rank(self.info.rank - 1)
        ops = [
            dist.P2POp(dist.isend, send, nxt, self.info.group, self.tag),
            dist.P2POp(dist.irecv, self._buf, prv, self.info.group, self.tag),
        ]
        self._send = send  # keep alive until the transfer completes
        self._reqs = dist.batch_isend_irecv(ops)

    def wait(self) -> torch.Tensor:
        t0 = time.perf_counter()
        for req in self._reqs:
            req.wait()
        _account(t0)
        self._reqs = []
        buf, self._buf, self._send = self._buf, None, None
        assert buf is not None
        return buf
