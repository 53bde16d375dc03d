"""Collective names, nccl-tests bandwidth conventions and the alpha-beta fit: pure functions.

Conventions (nccl-tests, REFERENCE section 3). ``S`` is the message size a sample records:

- ``all_gather``: the total gathered bytes (every rank's output); ``busbw = algbw * (n-1)/n``;
- ``reduce_scatter``, ``all_to_all``: the per-rank send buffer; ``busbw = algbw * (n-1)/n``;
- ``all_reduce``: the buffer; ``busbw = algbw * 2(n-1)/n``;
- ``p2p_ring``: bytes each rank sends to its ring successor while receiving as many from its
  predecessor (one ``batch_isend_irecv`` step of the ring attention); ``busbw = algbw``.

``algbw = S / t``. Each (collective, group size) curve is fitted as ``t = alpha + S / beta``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

OPS = ("p2p_ring", "all_gather", "reduce_scatter", "all_to_all", "all_reduce")


def bus_factor(op: str, n: int) -> float:
    """``busbw / algbw`` for ``op`` over ``n`` ranks."""
    if op not in OPS:
        raise ValueError(f"unknown collective {op!r}; expected one of {', '.join(OPS)}")
    if n < 1:
        raise ValueError(f"group size must be >= 1, got {n}")
    if op == "p2p_ring":
        return 1.0
    if op == "all_reduce":
        return 2.0 * (n - 1) / n
    return (n - 1) / n


def algbw(nbytes: float, seconds: float) -> float:
    """Algorithm bandwidth in bytes per second."""
    return float(nbytes) / float(seconds)


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
