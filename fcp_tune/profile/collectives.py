"""The collectives fcp-tune profiles, their nccl-tests conventions and the alpha-beta fit.

:data:`COLLECTIVES` is the one table of per-collective facts that the profiler
(:mod:`.measure_comm`), the cost model's interpolation (:mod:`.interp`), the reference
profiles (:mod:`.reference`) and the nccl-tests-style report read: the name used in
profiles, the nccl-tests binary that measures the same pattern, the torch.distributed call
fcp-tune times, what the message size ``S`` counts, the bus-bandwidth factor and how the
collective crosses node boundaries (REFERENCE section 3):

- ``all_gather``: ``S`` = total gathered bytes; ``busbw = algbw * (n-1)/n``;
- ``reduce_scatter``, ``all_to_all``: ``S`` = per-rank send buffer; ``busbw = algbw * (n-1)/n``;
- ``all_reduce``: ``S`` = the buffer; ``busbw = algbw * 2(n-1)/n``;
- ``p2p_ring``: bytes each rank sends to its ring successor while receiving as many from its
  predecessor (one ``batch_isend_irecv`` step of the ring attention; nccl-tests'
  ``sendrecv_perf`` does the same ring); ``busbw = algbw``.

``algbw = S / t``. Each (collective, group size) curve is fitted as ``t = alpha + S / beta``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

BUFFER_DTYPE = "float"  # nccl-tests' name for the float32 buffers the profiler uses
BUFFER_ELEM_BYTES = 4


@dataclass(frozen=True)
class Collective:
    """What fcp-tune knows about one collective (a row of :data:`COLLECTIVES`).

    ``bus_multiplier`` k gives ``busbw / algbw = k (n-1)/n`` (k = 0 means 1: point to
    point). ``splits``: the message is divided evenly over the group's ranks, so its element
    count is rounded to a multiple of the group size. ``phases``: latency-bound rounds of the
    algorithm (all-reduce = reduce-scatter + all-gather). ``inter_node``: how traffic crosses
    node boundaries: ``"link"`` (one rank's own link per hop), ``"remote_share"`` (each rank's
    ``(n - g)/n`` share of its buffer over its own link) or ``"node_links"`` (all ``g`` links
    of a node carry the bus traffic).
    """

    name: str
    nccl_test: str
    call: str
    message: str
    bus_multiplier: int
    splits: bool
    redop: str
    phases: int
    inter_node: str

    def bus_factor(self, n: int) -> float:
        """``busbw / algbw`` over ``n`` ranks."""
        if n < 1:
            raise ValueError(f"group size must be >= 1, got {n}")
        return 1.0 if self.bus_multiplier == 0 else self.bus_multiplier * (n - 1) / n

    def bus_formula(self) -> str:
        """The factor as nccl-tests writes it."""
        return {0: "1", 1: "(n-1)/n", 2: "2(n-1)/n"}[self.bus_multiplier]


COLLECTIVES: Mapping[str, Collective] = {
    c.name: c
    for c in (
        Collective("p2p_ring", "sendrecv_perf", "batch_isend_irecv to successor / from predecessor (RingExchange)",
                   "bytes each rank sends per ring step", 0, False, "none", 1, "link"),
        Collective("all_gather", "all_gather_perf", "all_gather_into_tensor (all_gather_single on torch >= 2.14)",
                   "total gathered bytes (every rank's output)", 1, True, "none", 1, "node_links"),
        Collective("reduce_scatter", "reduce_scatter_perf",
                   "reduce_scatter_tensor (reduce_scatter_single on torch >= 2.14)",
                   "per-rank send buffer", 1, True, "sum", 1, "node_links"),
        Collective("all_to_all", "alltoall_perf", "all_to_all_single", "per-rank send buffer", 1, True, "none", 1,
                   "remote_share"),
        Collective("all_reduce", "all_reduce_perf", "all_reduce", "the buffer", 2, False, "sum", 2, "node_links"),
    )
}
OPS = tuple(COLLECTIVES)


def collective(op: str) -> Collective:
    """The table row of ``op``; a ValueError naming the known ones otherwise."""
    try:
        return COLLECTIVES[op]
    except KeyError:
        raise ValueError(f"unknown collective {op!r}; expected one of {', '.join(OPS)}") from None


def bus_factor(op: str, n: int) -> float:
    """``busbw / algbw`` for ``op`` over ``n`` ranks."""
    return collective(op).bus_factor(n)


def algbw(nbytes: float, seconds: float) -> float:
    """Algorithm bandwidth in bytes per second."""
    return float(nbytes) / float(seconds)


def nccl_row(op: str, n: int, nbytes: int, seconds: float, max_seconds: float | None = None) -> dict[str, Any]:
    """One result line as nccl-tests prints it: size, count, type, redop, time, algbw, busbw.

    ``time_us`` is the median over ranks (``max_us`` the slowest rank); bandwidths in GB/s
    (1e9 B/s), as nccl-tests reports them.
    """
    c = collective(op)
    bw = algbw(nbytes, seconds)
    row = {"collective": op, "nccl_test": c.nccl_test, "ranks": n, "size_B": int(nbytes),
           "count": int(nbytes) // BUFFER_ELEM_BYTES, "type": BUFFER_DTYPE, "redop": c.redop,
           "time_us": seconds * 1e6, "algbw_GBps": bw / 1e9, "busbw_GBps": bw * c.bus_factor(n) / 1e9}
    if max_seconds is not None:
        row["max_us"] = max_seconds * 1e6
    return row


def fit_alpha_beta(nbytes: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """Fit ``t = alpha + S / beta`` with ``alpha >= 0``, ``beta > 0``; returns ``(alpha, beta)``.

    Least squares on *relative* error (each residual divided by its measured time) so the
    small-message latency weighs as much as the large-message bandwidth; exact on exact
    alpha-beta data. Non-negativity: a negative intercept refits the slope through the
    origin; a non-positive slope keeps the mean time as ``alpha`` with an (effectively)
    infinite ``beta`` of 1e18 B/s.
    """
    s = np.asarray(nbytes, dtype=np.float64)
    t = np.asarray(seconds, dtype=np.float64)
    if s.shape != t.shape or s.size == 0:
        raise ValueError("fit needs as many sizes as times, at least one")
    if np.any(t <= 0) or np.any(s < 0):
        raise ValueError("fit needs positive times and non-negative sizes")
    w = 1.0 / t
    if s.size >= 2 and np.ptp(s) > 0:
        a = np.stack([w, s * w], axis=1)
        (alpha, slope), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
    else:
        alpha, slope = float(np.mean(t)), 0.0
    if alpha < 0:
        alpha = 0.0
        slope = float(np.sum(s * w) / np.sum((s * w) ** 2)) if np.any(s > 0) else 0.0
    if slope <= 0:
        alpha, slope = float(np.mean(t)), 1e-18
    return float(alpha), float(1.0 / slope)
