"""Look-ups on a profile: attention block times between grid points, collective times at any size.

Attention (:class:`AttentionGrid`): ``log(time)`` is interpolated linearly in
``(log q_len, log k_len)`` (bilinear for full blocks, linear in ``log s`` for causal
squares), so every grid point is reproduced exactly and a power law between neighbours is
followed exactly. Measurement noise that makes a larger block faster than a smaller one is
flattened first (each grid time is raised to the largest time of any smaller block along
each axis), so predictions never decrease with length. Outside the grid nothing is
extrapolated wildly:

- above the largest length the block runs at the edge's throughput: the edge time is
  scaled by the FLOP ratio (``q*k / (q_edge*k_edge)`` for full blocks, ``(s/s_edge)^2``
  for causal squares);
- below the smallest length the kernel is latency-bound: the edge time is kept.

Collectives (:class:`CommTable`): the fitted ``alpha + bytes/beta`` of the measured group
size; a size between measured ones interpolates ``alpha`` and ``1/beta`` linearly; a size
past the node (``extrapolation.gpus_per_node``) keeps the intra-node bus bandwidth unless
the inter-node links are slower (see :meth:`CommTable.fit_for`). A size above every measured
one in a profile without such a rule (a measured profile taken on fewer processes than it
is asked about) follows the *same-fabric rule*: the largest measured group's bus bandwidth
(nccl-tests' size-independent figure) and its latency per algorithm step, ``alpha`` scaled by
``(n - 1) / (m - 1)`` for the collectives (ring algorithms take ``n - 1`` steps) and kept for
``p2p_ring`` (one exchange per step). It holds while every rank keeps a core (or GPU) of
its own; it says nothing about more processes than cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fcp_tune.errors import FcpTuneError
from fcp_tune.profile.collectives import COLLECTIVES, OPS, bus_factor
from fcp_tune.profile.schema import CommFit, Profile


def _axis(grid_log: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower index, upper index and weight of ``log(x)`` on a sorted log-grid (clamped)."""
    n = grid_log.size
    lx = np.minimum(np.maximum(np.log(x), grid_log[0]), grid_log[-1])
    if n == 1:
        z = np.zeros(lx.shape, dtype=np.int64)
        return z, z, np.zeros(lx.shape)
    i = np.minimum(np.searchsorted(grid_log, lx, side="right") - 1, n - 2)
    w = (lx - grid_log[i]) / (grid_log[i + 1] - grid_log[i])
    return i, i + 1, w


@dataclass(frozen=True)
class _Curve2D:
    """Full blocks: ``t_log[phase, i_q, i_k]``; returns ``(phases, n)`` seconds."""

    q_log: np.ndarray
    k_log: np.ndarray
    t_log: np.ndarray

    def __call__(self, q: np.ndarray, k: np.ndarray) -> np.ndarray:
        i0, i1, wq = _axis(self.q_log, q)
        j0, j1, wk = _axis(self.k_log, k)
        t = self.t_log
        lt = (1 - wq) * ((1 - wk) * t[:, i0, j0] + wk * t[:, i0, j1]) + wq * ((1 - wk) * t[:, i1, j0] + wk * t[:, i1, j1])
        scale = np.maximum(q / self.q_log_max, 1.0) * np.maximum(k / self.k_log_max, 1.0)
        return np.exp(lt) * scale

    @property
    def q_log_max(self) -> float:
        return math.exp(self.q_log[-1])

    @property
    def k_log_max(self) -> float:
        return math.exp(self.k_log[-1])


@dataclass(frozen=True)
class _Curve1D:
    """Causal squares: ``t_log[phase, i_s]``; returns ``(phases, n)`` seconds."""

    s_log: np.ndarray
    t_log: np.ndarray

    def __call__(self, s: np.ndarray) -> np.ndarray:
        i0, i1, w = _axis(self.s_log, s)
        lt = (1 - w) * self.t_log[:, i0] + w * self.t_log[:, i1]
        return np.exp(lt) * np.maximum(s / math.exp(self.s_log[-1]), 1.0) ** 2


class AttentionGrid:
    """Vectorised per-block times (seconds, one layer, the profile's head shape), fwd and bwd."""

    def __init__(self, profile: Profile) -> None:
        full = [p for p in profile.attention if not p.causal]
        causal = sorted((p for p in profile.attention if p.causal), key=lambda p: p.q_len)
        qs = sorted({p.q_len for p in full})
        ks = sorted({p.k_len for p in full})
        table = np.empty((2, len(qs), len(ks)))
        for p in full:
            table[:, qs.index(p.q_len), ks.index(p.k_len)] = (p.fwd_s, p.bwd_s)
        diag = np.array([[p.fwd_s for p in causal], [p.bwd_s for p in causal]])
        # Noise that makes a bigger block faster is flattened: non-decreasing along each axis.
        table = np.maximum.accumulate(np.maximum.accumulate(table, axis=1), axis=2)
        diag = np.maximum.accumulate(diag, axis=1)
        self._full = _Curve2D(np.log(qs), np.log(ks), np.log(table))
        self._causal = _Curve1D(np.log([p.q_len for p in causal]), np.log(diag))

    def full(self, q: np.ndarray, k: np.ndarray) -> np.ndarray:
        """``(2, n)`` forward and backward seconds of full blocks ``q x k`` (all > 0)."""
        return self._full(np.asarray(q, dtype=np.float64), np.asarray(k, dtype=np.float64))

    def causal(self, s: np.ndarray) -> np.ndarray:
        """``(2, n)`` forward and backward seconds of causal squares of side ``s`` (all > 0)."""
        return self._causal(np.asarray(s, dtype=np.float64))

    def block(self, q: np.ndarray, k: np.ndarray, causal: np.ndarray) -> np.ndarray:
        """``(2, *shape)`` forward and backward seconds of full-or-causal-square blocks; zero
        where ``q`` or ``k`` is zero."""
        q = np.asarray(q, dtype=np.float64)
        k = np.asarray(k, dtype=np.float64)
        causal = np.asarray(causal, dtype=bool)
        out = np.zeros((2,) + q.shape)
        live = (q > 0) & (k > 0)
        f = live & ~causal
        c = live & causal
        if f.any():
            out[:, f] = self._full(q[f], k[f])
        if c.any():
            out[:, c] = self._causal(q[c])
        return out


class CommTable:
    """``comm_time(op, group_size, nbytes)`` from a profile's fits and extrapolation rule."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._sizes = {op: sorted(c.group_size for c in profile.collectives if c.op == op) for op in OPS}
        self._fits: dict[tuple[str, int], CommFit] = {}  # memo: the planner asks the same few thousand times

    def fit_for(self, op: str, n: int) -> CommFit:
        """The alpha-beta fit of ``op`` over ``n`` ranks (measured, interpolated or extrapolated); memoised."""
        key = (op, int(n))
        fit = self._fits.get(key)
        if fit is None:
            fit = self._fits[key] = self._fit(op, int(n))
        return fit

    def _fit(self, op: str, n: int) -> CommFit:
        """The alpha-beta fit of ``op`` over ``n`` ranks (measured, interpolated or extrapolated).

        Past one node (``n > gpus_per_node``): the bus bandwidth of the node-sized fit is kept
        unless ``gpus_per_node`` inter-node links carry less (``p2p_ring``: one link per ring
        hop; ``all_to_all``: each rank's ``(n - gpus_per_node)/n`` remote share crosses its
        own link); latency adds ``inter_node.alpha_s`` per extra node for the collectives and
        once for ``p2p_ring``. Groups are assumed node-aligned.
        """
        if op not in OPS:
            raise FcpTuneError(f"unknown collective {op!r}; expected one of {', '.join(OPS)}")
        if n < 2:
            raise FcpTuneError(f"collectives need a group of >= 2 ranks, got {n}")
        exact = self.profile.curve(op, n)
        if exact is not None:
            return exact.fit
        ex = self.profile.extrapolation
        if ex is not None and n > ex.gpus_per_node:
            return self._inter_node(op, n)
        sizes = self._sizes[op]
        lo = [s for s in sizes if s < n]
        hi = [s for s in sizes if s > n]
        if lo and hi:
            a, b = self.profile.curve(op, lo[-1]).fit, self.profile.curve(op, hi[0]).fit
            w = (n - lo[-1]) / (hi[0] - lo[-1])
            inv = (1 - w) / a.beta_Bps + w / b.beta_Bps
            return CommFit((1 - w) * a.alpha_s + w * b.alpha_s, 1.0 / inv)
        if lo and ex is None:
            return same_fabric(op, lo[-1], self.profile.curve(op, lo[-1]).fit, n)
        have = ", ".join(map(str, sizes)) or "none"
        raise FcpTuneError(
            f"profile has no {op} data for {n} ranks (measured group sizes: {have}) and no extrapolation rule "
            f"for it; profile with --nproc {n} or use a profile with an extrapolation rule"
        )

    def _inter_node(self, op: str, n: int) -> CommFit:
        ex = self.profile.extrapolation
        assert ex is not None
        g = ex.gpus_per_node
        base = self.fit_for(op, g) if g >= 2 else CommFit(0.0, float("inf"))
        nodes = math.ceil(n / g)
        link = ex.inter_node
        crossing = COLLECTIVES[op].inter_node
        if crossing == "link":
            return CommFit(max(base.alpha_s, link.alpha_s), min(base.beta_Bps, link.beta_Bps))
        intra_bus = base.beta_Bps * bus_factor(op, g) if g >= 2 else float("inf")
        if crossing == "remote_share":
            inter_bus = link.beta_Bps * (n - 1) / (n - g)
        else:
            inter_bus = link.beta_Bps * g
        bus = min(intra_bus, inter_bus)
        return CommFit(base.alpha_s + link.alpha_s * (nodes - 1), bus / bus_factor(op, n))

    def time(self, op: str, n: int, nbytes: float) -> float:
        """Seconds for ``op`` over ``n`` ranks on a ``nbytes`` message (0 for one rank or no bytes)."""
        if n <= 1 or nbytes <= 0:
            return 0.0
        return self.fit_for(op, n).time(nbytes)

    def covers(self, op: str, n: int) -> bool:
        """Whether :meth:`fit_for` can answer for ``op`` at ``n`` ranks."""
        try:
            self.fit_for(op, n)
        except FcpTuneError:
            return False
        return True


def same_fabric(op: str, m: int, fit: CommFit, n: int) -> CommFit:
    """``op``'s fit at ``n`` ranks from its fit at ``m < n`` ranks on the same fabric (the rule in
    the module docstring): bus bandwidth kept, latency per ring step kept."""
    if not 2 <= m < n:
        raise FcpTuneError(f"same_fabric extrapolates from 2 <= m < n, got m={m}, n={n}")
    bus = fit.beta_Bps * bus_factor(op, m)
    steps = 1.0 if op == "p2p_ring" else (n - 1) / (m - 1)
    return CommFit(fit.alpha_s * steps, bus / bus_factor(op, n))
