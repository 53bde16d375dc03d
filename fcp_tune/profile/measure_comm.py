"""Collective timings on one rank, and their combination over ranks into fitted curves.

Every group size ``g`` in the requested list uses ranks ``[0, g)``; all groups are created
on every rank in one canonical order without local synchronisation (REFERENCE section 4).
For each (collective, group size, message size) the world meets at a barrier, the
group's ranks run ``warmup`` untimed calls, then :func:`sample_count` timed calls (``repeats``,
more for small messages), each after a group barrier; a rank reports the median of its
own times. ``p2p_ring`` is exactly the
ring attention's exchange (:class:`~fcp_tune.attention.comm.RingExchange`: a
``batch_isend_irecv`` to the successor and from the predecessor). Buffers are float32.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

from fcp_tune.attention.comm import GroupInfo, RingExchange, all_gather_single, reduce_scatter_single
from fcp_tune.profile.collectives import BUFFER_ELEM_BYTES, collective, fit_alpha_beta
from fcp_tune.profile.schema import CommCurve, CommFit, CommSample

_ELEM = BUFFER_ELEM_BYTES  # float32
MIB = 1 << 20


def message_elems(op: str, nbytes: int, g: int) -> int:
    """float32 elements of a ``nbytes`` message, rounded so that it splits evenly over ``g`` ranks."""
    n = max(1, nbytes // _ELEM)
    if collective(op).splits:
        n = max(g, (n // g) * g)
    return n


def _all_gather_call(n: int, g: int, group: Any, rank: int, device: torch.device) -> Callable[[], None]:
    out = torch.empty(n, device=device)
    inp = torch.ones(n // g, device=device)
    return lambda: all_gather_single(out, inp, group=group)


def _reduce_scatter_call(n: int, g: int, group: Any, rank: int, device: torch.device) -> Callable[[], None]:
    inp = torch.ones(n, device=device)
    out = torch.empty(n // g, device=device)
    return lambda: reduce_scatter_single(out, inp, group=group)


def _all_to_all_call(n: int, g: int, group: Any, rank: int, device: torch.device) -> Callable[[], None]:
    inp = torch.ones(n, device=device)
    out = torch.empty(n, device=device)
    return lambda: dist.all_to_all_single(out, inp, group=group)


def _all_reduce_call(n: int, g: int, group: Any, rank: int, device: torch.device) -> Callable[[], None]:
    buf = torch.ones(n, device=device)
    return lambda: dist.all_reduce(buf, group=group)


def _p2p_ring_call(n: int, g: int, group: Any, rank: int, device: torch.device) -> Callable[[], None]:
    buf = torch.ones(n, device=device)
    exch = RingExchange(GroupInfo(group, rank, g), tag=77)

    def ring() -> None:
        exch.start(buf)
        exch.wait()

    return ring


# The call each row of collectives.COLLECTIVES names (its ``call`` column), by collective name.
_CALLS: dict[str, Callable[..., Callable[[], None]]] = {
    "p2p_ring": _p2p_ring_call, "all_gather": _all_gather_call, "reduce_scatter": _reduce_scatter_call,
    "all_to_all": _all_to_all_call, "all_reduce": _all_reduce_call,
}


def _op_call(op: str, n: int, g: int, group: Any, rank: int, device: torch.device) -> Callable[[], None]:
    """A closure running one ``op`` call on pre-allocated buffers (sizes per :func:`message_elems`)."""
    return _CALLS[collective(op).name](n, g, group, rank, device)


def sample_count(nbytes: int, repeats: int) -> int:
    """Timed calls for a message: ``repeats``, up to 10x more for messages under 1 MiB.

    Small messages are cheap and their times bimodal on a busy host (a wake-up can cost a
    scheduler tick); many samples keep the median stable. Every rank derives the same count.
    """
    return repeats * max(1, min(10, MIB // max(1, nbytes)))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_collectives_rank(
    rank: int,
    ops: Sequence[str],
    group_sizes: Sequence[int],
    message_bytes: Sequence[int],
    warmup: int,
    repeats: int,
    device: torch.device,
    advance: Callable[[], None] = lambda: None,
) -> dict[tuple[str, int, int], float]:
    """This rank's median seconds per ``(op, group size, bytes)`` it took part in.

    Every rank of the world must call this with the same arguments. ``advance`` is called
    once per (op, size, bytes) item (rank 0 drives the progress bar with it).
    """
    groups = {g: dist.new_group(list(range(g))) for g in group_sizes}
    out: dict[tuple[str, int, int], float] = {}
    for op in ops:
        for g in group_sizes:
            for nbytes in message_bytes:
                dist.barrier()
                n = message_elems(op, nbytes, g)
                if rank < g:
                    call = _op_call(op, n, g, groups[g], rank, device)
                    for _ in range(warmup):
                        call()
                    _sync(device)
                    times = []
                    for _ in range(sample_count(nbytes, repeats)):
                        dist.barrier(group=groups[g])
                        t0 = time.perf_counter()
                        call()
                        _sync(device)
                        times.append(time.perf_counter() - t0)
                    out[(op, g, n * _ELEM)] = statistics.median(times)
                advance()
    dist.barrier()
    return out


def combine_collectives(per_rank: Sequence[dict[tuple[str, int, int], float]]) -> tuple[CommCurve, ...]:
    """Median and max over ranks for every sample, and the alpha-beta fit on the medians."""
    keys = sorted({k for r in per_rank for k in r})
    samples: dict[tuple[str, int], list[CommSample]] = {}
    for op, g, nbytes in keys:
        times = [r[(op, g, nbytes)] for r in per_rank if (op, g, nbytes) in r]
        samples.setdefault((op, g), []).append(
            CommSample(nbytes, max(statistics.median(times), 1e-9), max(max(times), 1e-9))
        )
    curves = []
    for (op, g), rows in samples.items():
        alpha, beta = fit_alpha_beta([s.bytes for s in rows], [s.median_s for s in rows])
        curves.append(CommCurve(op, g, CommFit(alpha, beta), tuple(rows)))
    return tuple(curves)
