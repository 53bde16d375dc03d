"""Cost functions the planner balances with: the protocol, a documented default, step cost.

A cost function predicts the seconds a group of ``degree`` ranks needs for forward plus
backward on a list of sequences. The planner only compares predictions, so a rough but
monotone model already gives sound plans; a calibrated model (fitted from profiles) can
replace :class:`DefaultCost` anywhere a ``cost`` argument is taken.

Cost functions may also offer ``group_time_table(bins, degrees)`` (see
:func:`cost_table`): one vectorised call for many (bin, degree) pairs. The adaptive
planner evaluates thousands of pairs per batch; without the method it falls back to
``group_time`` calls on a thinned set of degrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from fcp_tune.modelcfg import ModelConfig
    from fcp_tune.planner.plan import Plan


@runtime_checkable
class CostFn(Protocol):
    """Predicts group run time; the only method the planner needs."""

    def group_time(self, seqlens: Sequence[int], degree: int) -> float:
        """Seconds for ``degree`` ranks to run forward + backward on ``seqlens`` (zigzag-sharded)."""
        ...


@dataclass(frozen=True)
class DefaultCost:
    """Attention FLOPs + a linear per-token term, divided over the group, plus a comm term.

    Per layer, for a group of ``d`` ranks and sequences of lengths ``L``::

        compute = sum(7 * L^2 * heads * head_dim + linear_flops_per_token * L) / (d * flops_per_s)
        comm    = sum over sequences of 2 * ((d-1)/d * L * kv_bytes_per_token / bandwidth
                                             + (d-1) * latency_s)            (0 when d = 1)

    ``7 L^2 h d`` is FlashAttention's causal count (forward ``4 L^2 h d`` halved for causal,
    backward 2.5x forward). The comm term is the K/V all-gather in forward plus the dK/dV
    reduce-scatter in backward: (d-1)/d of each sequence's K/V per rank, in d-1 steps of
    ``latency_s`` each, not overlapped with compute. The per-sequence latency also stands in
    for the fixed per-step overheads (small kernels, bookkeeping) that make sharding short
    sequences wasteful. Defaults describe a small model (hidden 512, 8 heads of 64, 4
    layers) on one CPU rank: about 100 GFLOP/s sustained, 2 GB/s and 100 microseconds per
    step for gloo over shared memory. Ring and all-gather move the same bytes, so the
    model is scheme-agnostic. A calibrated cost model replaces these guesses.
    """

    num_layers: int = 4
    num_heads: int = 8
    head_dim: int = 64
    linear_flops_per_token: float = 6.0 * 12 * 512**2  # fwd+bwd of 12 h^2 weights, h = 512
    kv_bytes_per_token: float = 2 * 8 * 64 * 2.0  # K and V, bf16
    flops_per_s: float = 1e11
    bandwidth_bytes_per_s: float = 2e9
    latency_s: float = 100e-6

    def _work(self, lengths: np.ndarray) -> np.ndarray:
        """Per-sequence FLOPs for one layer, forward + backward."""
        L = lengths.astype(np.float64)
        return (7.0 * self.num_heads * self.head_dim * L + self.linear_flops_per_token) * L

    def group_time(self, seqlens: Sequence[int], degree: int) -> float:
        t = self.group_time_table([seqlens], np.array([[degree]]))
        return float(t[0, 0])

    def group_time_table(self, bins: Sequence[Sequence[int]], degrees: np.ndarray) -> np.ndarray:
        """``out[k, j] = group_time(bins[k], degrees[k, j])``, vectorised."""
        counts = [len(b) for b in bins]
        if len(bins) == 1 or all(c == 1 for c in counts):  # one bin, or one sequence per bin
            flat = np.asarray(bins[0] if len(bins) == 1 else [b[0] for b in bins], dtype=np.float64).ravel()
            per = self._work(flat)
            if len(bins) == 1:
                work, tokens = np.array([per.sum()]), np.array([flat.sum()])
            else:
                work, tokens = per, flat
        else:
            flat = np.concatenate([np.asarray(b, dtype=np.float64).ravel() for b in bins])
            sizes = np.asarray(counts)
            work, tokens = np.zeros(len(bins)), np.zeros(len(bins))
            if flat.size:
                nonempty = sizes > 0
                offsets = (np.cumsum(sizes) - sizes)[nonempty]
                work[nonempty] = np.add.reduceat(self._work(flat), offsets)
                tokens[nonempty] = np.add.reduceat(flat, offsets)
        return self.table_from_totals(work, tokens, degrees, np.asarray(counts, dtype=np.float64))

    def table_from_totals(
        self, work: np.ndarray, tokens: np.ndarray, degrees: np.ndarray, nseq: np.ndarray
    ) -> np.ndarray:
        """Same as :meth:`group_time_table` from per-bin FLOPs (``_work`` sums), tokens, sequence counts."""
        d = np.asarray(degrees, dtype=np.float64)
        steps = d - 1.0
        bytes_s = 2.0 * self.kv_bytes_per_token / self.bandwidth_bytes_per_s
        per_step = (tokens * bytes_s)[:, None] / d + (2.0 * self.latency_s) * nseq[:, None]
        return self.num_layers * (work[:, None] / (d * self.flops_per_s) + steps * per_step)


@dataclass(frozen=True)
class LimitedCost:
    """``inner`` limited to a set of group ``sizes``: ``inf`` for every other size.

    The adaptive planner's solvers treat ``inf`` as "not allowed", so one wrapper serves both
    limits a plan must respect: the degrees a scheme can run (:func:`feasible_cost`: Ulysses
    needs a degree dividing the K/V head count) and the sizes of a capped group vocabulary
    (:func:`fcp_tune.planner.vocab.restrict`). Build it with :func:`limit_sizes`, which
    intersects nested limits instead of stacking wrappers.
    """

    inner: CostFn
    sizes: tuple[int, ...]  # allowed group sizes, ascending

    def group_time(self, seqlens: Sequence[int], degree: int) -> float:
        return float(self.inner.group_time(seqlens, degree)) if int(degree) in self.sizes else float("inf")

    def group_time_table(self, bins: Sequence[Sequence[int]], degrees: np.ndarray) -> np.ndarray:
        degrees = np.asarray(degrees)
        ok = np.isin(degrees, self.sizes)
        return np.where(ok, cost_table(self.inner, bins, np.where(ok, degrees, 0)), np.inf)


def limit_sizes(cost: CostFn, sizes: Sequence[int]) -> LimitedCost:
    """``cost`` limited to ``sizes`` (intersected with any limit ``cost`` already has)."""
    allowed = {int(s) for s in sizes}
    if isinstance(cost, LimitedCost):
        allowed &= set(cost.sizes)
        cost = cost.inner
    return LimitedCost(cost, tuple(sorted(allowed)))


def allowed_sizes(cost: CostFn) -> tuple[int, ...] | None:
    """The group sizes a limited cost allows, ascending; ``None`` when ``cost`` has no limit."""
    return cost.sizes if isinstance(cost, LimitedCost) else None


def feasible_cost(cost: CostFn, scheme: str, model: "ModelConfig", world_size: int) -> CostFn:
    """``cost`` restricted to the degrees ``1..world_size`` that ``scheme`` can run for ``model``.

    Unchanged when the scheme runs every degree (allgather, ring).
    """
    from fcp_tune.schemes import get_scheme

    degrees = get_scheme(scheme).feasible_degrees(model, world_size)
    if degrees == tuple(range(1, world_size + 1)):
        return cost
    return limit_sizes(cost, degrees)


def cost_table(cost: CostFn, bins: Sequence[Sequence[int]], degrees: np.ndarray) -> np.ndarray:
    """``out[k, j]`` = predicted time of bin ``k`` (a list of lengths) at ``degrees[k, j]``.

    Uses ``cost.group_time_table`` when the cost offers it, else one ``group_time`` call per
    entry; entries whose degree is ``<= 0`` are skipped and set to ``inf`` (callers use
    that to thin the degrees they ask about).
    """
    degrees = np.asarray(degrees)
    table = getattr(cost, "group_time_table", None)
    if table is not None:
        if degrees.min(initial=1) > 0:
            return np.asarray(table(bins, degrees), dtype=np.float64)
        out = np.asarray(table(bins, np.maximum(degrees, 1)), dtype=np.float64)
        return np.where(degrees > 0, out, np.inf)
    out = np.full(degrees.shape, np.inf)
    for k, b in enumerate(bins):
        lengths = [int(x) for x in b]
        for j in range(degrees.shape[1]):
            d = int(degrees[k, j])
            if d > 0:
                out[k, j] = float(cost.group_time(lengths, d))
    return out


def finish_times(plan: "Plan", group_times: Sequence[Sequence[float]]) -> list[float]:
    """When each rank finishes its last wave: the critical path through the plan.

    ``group_times[w][k]`` is the time of group ``k`` of wave ``w``. A group starts when all
    of its ranks are free (its first collective waits for the last of them) and holds
    them for its time; nothing else synchronises waves. This is what the executor does,
    and it is never more than the sum over waves of the slowest group (exactly that when
    every group spans the whole world).
    """
    free = [0.0] * plan.world_size
    for wave, times in zip(plan.waves, group_times):
        for g, t in zip(wave.groups, times):
            end = max(free[g.start : g.start + g.size]) + float(t)
            free[g.start : g.start + g.size] = [end] * g.size
    return free


def step_cost(plan: "Plan", seqlens: Sequence[int], cost: CostFn) -> float:
    """Predicted time of the plan's waves: the critical path (see :func:`finish_times`)."""
    times = [[cost.group_time([int(seqlens[s]) for s in g.seq_ids], g.size) for g in w.groups] for w in plan.waves]
    return max(finish_times(plan, times), default=0.0)
