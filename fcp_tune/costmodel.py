"""A calibrated cost model: predicted seconds and bytes from a measured (or reference) profile.

:class:`CostModel` implements the planner's ``CostFn`` protocol. For a group of ``d``
ranks running forward and backward on a list of causal sequences, per layer:

- attention compute: the blocks the executor runs, from the scheme object
  (:meth:`fcp_tune.schemes.base.Scheme.blocks`), each timed from the profile's grid
  (:class:`~fcp_tune.profile.interp.AttentionGrid`, scaled by the block's ``head_share``),
  summed over the rank's sequences;
- communication: the scheme's :meth:`~fcp_tune.schemes.base.Scheme.comm_steps` (padded to
  the largest rank's tokens). A *lock-step* scheme (``ring``) takes, per step,
  ``max(slowest rank's compute, transfers overlapping the step)`` plus its exposed
  transfers; otherwise (``allgather``: all-gather of K/V, reduce-scatter of dK/dV;
  ``ulysses``: four all-to-alls) every rank pays its own compute plus every collective;

plus token-linear work for the rank's tokens (``linear_flops_per_token / profile rate``), the
attention core's own per-token bookkeeping (per layer ``linear.core_s_per_token``, plus
``core_slope_s_per_token`` per further rank of the group) and the
fixed cost of one forward+backward call (``linear.wave_s``, paid by every rank of the group
once per wave; both 0 for profiles that lack them).
The group time is the slowest rank's. Shapes other than the profile's scale attention by
``heads * head_dim``. Activation recompute (the model's ``training.recompute``) adds one more
attention forward to each backward (``selective``, ``full``) and the layers' matmul forward
(``full``); a static tensor-parallel degree ``t`` splits attention and matmul work over the
``t`` GPUs of a rank. Memory comes from :mod:`fcp_tune.memory` (model state sharded as the
model is trained, activations per recompute mode).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from fcp_tune.errors import FcpTuneError
from fcp_tune import memory
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.planner.cost import finish_times
from fcp_tune.planner.plan import Plan
from fcp_tune.policy.degrees import min_degree_for
from fcp_tune.profile.interp import AttentionGrid, CommTable
from fcp_tune.profile.schema import Profile
from fcp_tune.schemes import DEFAULT_SCHEME, Scheme, get_scheme
from fcp_tune.schemes.layout import shard_layout, tokens_per_rank

if TYPE_CHECKING:
    from fcp_tune.planner.table import TabulatedCost


@dataclass(frozen=True)
class Prediction:
    """What one step of a plan costs, according to a :class:`CostModel`.

    ``rank_busy[w][r]``: seconds rank ``r`` computes in wave ``w`` (its group's time, 0 when
    idle). ``step_time`` = the plan's critical path (a group starts when all its ranks are
    free; :func:`fcp_tune.planner.cost.finish_times`), at most the sum of ``wave_times``,
    plus ``grad_sync_s`` + ``optimizer_s``.
    ``ideal_time``: the same fixed costs plus the batch's work, each sequence at its cheapest
    degree that fits the token budget (in rank-seconds, :meth:`CostModel.sequence_work`),
    spread perfectly over all ranks (one wave each: the per-call ``wave_s`` counts once).
    ``efficiency = ideal_time / step_time``.
    """

    wave_times: tuple[float, ...]
    rank_busy: tuple[tuple[float, ...], ...]
    grad_sync_s: float
    optimizer_s: float
    step_time: float
    peak_memory_bytes: tuple[float, ...]
    ideal_time: float
    efficiency: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_time": self.step_time, "wave_times": list(self.wave_times),
            "grad_sync_s": self.grad_sync_s, "optimizer_s": self.optimizer_s,
            "ideal_time": self.ideal_time, "efficiency": self.efficiency,
            "rank_busy": [list(w) for w in self.rank_busy], "peak_memory_bytes": list(self.peak_memory_bytes),
        }


@dataclass(frozen=True, eq=False)
class CostModel:
    """Profile-calibrated ``CostFn``: ``group_time``, ``attention_time``, ``comm_time``, ``predict``.

    Immutable in what it predicts; it memoises per-(length, degree) block times inside the
    instance. Compared and hashed by identity (the memo makes it a stateful object).
    """

    profile: Profile
    model: ModelConfig
    scheme: str = DEFAULT_SCHEME
    world_size: int | None = None
    _grid: AttentionGrid = field(init=False, repr=False, compare=False)
    _comm: CommTable = field(init=False, repr=False, compare=False)
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _attn_scale: float = field(default=1.0, init=False, repr=False, compare=False)
    _lin_s_per_token: float = field(default=0.0, init=False, repr=False, compare=False)
    _recompute_lin_s_per_token: float = field(default=0.0, init=False, repr=False, compare=False)
    _recompute_attn: float = field(default=0.0, init=False, repr=False, compare=False)
    _wave_s: float = field(default=0.0, init=False, repr=False, compare=False)
    _core_s_per_token: float = field(default=0.0, init=False, repr=False, compare=False)
    _core_slope: float = field(default=0.0, init=False, repr=False, compare=False)
    _scheme: Scheme = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            spec = get_scheme(self.scheme)
        except ValueError as e:
            raise FcpTuneError(str(e)) from None
        object.__setattr__(self, "_scheme", spec)
        n = self.profile.world_size if self.world_size is None else self.world_size
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise FcpTuneError(f"world_size must be a positive integer, got {self.world_size!r}")
        object.__setattr__(self, "world_size", n)
        object.__setattr__(self, "_grid", AttentionGrid(self.profile))
        object.__setattr__(self, "_comm", CommTable(self.profile))
        for op in spec.ops:
            for d in spec.feasible_degrees(self.model, n)[1:]:
                self._comm.fit_for(op, d)  # raises naming the missing data
        if n > 1:
            self._comm.fit_for("all_reduce", n)
        pm = self.profile.model
        tp = self.model.training.tensor_parallel
        object.__setattr__(self, "_attn_scale", (self.model.heads * self.model.head_dim) / (pm.heads * pm.head_dim) / tp)
        rate = self.profile.linear.flops_per_s * tp
        object.__setattr__(self, "_lin_s_per_token", self.model.linear_flops_per_token() / rate)
        attn_again, lin_again = memory.recompute_share(self.model)
        object.__setattr__(self, "_recompute_attn", attn_again)
        object.__setattr__(self, "_recompute_lin_s_per_token", lin_again * memory.layer_matmul_flops_per_token(self.model) / rate)
        # Fixed per-call cost scales with the layers dispatched; core bookkeeping with Q/K/V width, like attention.
        object.__setattr__(self, "_wave_s", self.profile.linear.wave_s * self.model.layers / pm.layers)
        object.__setattr__(self, "_core_s_per_token", self.profile.linear.core_s_per_token * self._attn_scale)
        object.__setattr__(self, "_core_slope", self.profile.linear.core_slope_s_per_token * self._attn_scale)

    @classmethod
    def from_profile(
        cls, profile: Profile, model: ModelConfig, scheme: str = DEFAULT_SCHEME, world_size: int | None = None
    ) -> "CostModel":
        """Build the model; errors name what the profile lacks for ``world_size`` ranks."""
        return cls(profile, model, scheme, world_size)

    # ------------------------------------------------------------------ pieces
    def attention_time(self, q_len: int, k_len: int, causal: bool) -> float:
        """Forward+backward seconds of one attention block, one layer.

        A causal block with ``k_len > q_len`` (bottom-right aligned) is a full
        ``q_len x (k_len - q_len)`` block plus a causal square of ``q_len``; with
        ``k_len < q_len`` only the square of ``k_len`` does work.
        """
        if q_len < 0 or k_len < 0:
            raise FcpTuneError(f"block lengths must be >= 0, got q_len {q_len} k_len {k_len}")
        if causal:
            sq = min(q_len, k_len)
            q = np.array([q_len, sq], dtype=np.float64)
            k = np.array([k_len - sq, sq], dtype=np.float64)
            c = np.array([False, True])
        else:
            q, k, c = np.array([q_len], dtype=np.float64), np.array([k_len], dtype=np.float64), np.array([False])
        return float(self._grid.block(q, k, c).sum()) * self._attn_scale

    def comm_time(self, op: str, group_size: int, nbytes: float) -> float:
        """Seconds of collective ``op`` over ``group_size`` ranks moving ``nbytes`` (nccl-tests sizes)."""
        if group_size > self.world_size:
            raise FcpTuneError(f"group of {group_size} ranks is larger than the world ({self.world_size})")
        return self._comm.time(op, group_size, nbytes)

    def _seq(self, seqlen: int, degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Memoised ``(steps, ranks)`` fwd and bwd seconds of one causal sequence, and tokens per rank."""
        key = (seqlen, degree)
        hit = self._memo.get(key)
        if hit is None:
            b = self._scheme.blocks(shard_layout((0, seqlen), degree), causal=True)
            fwd, bwd = self._grid.block(b.q_len, b.k_len, b.causal).sum(-1)[..., 0] * self._attn_scale
            if b.head_share != 1.0:
                fwd, bwd = fwd * b.head_share, bwd * b.head_share
            hit = (fwd, bwd, tokens_per_rank(seqlen, degree).astype(np.float64))
            self._memo[key] = hit
        return hit

    def _fill(self, lengths: Sequence[int], degree: int) -> None:
        """Memoise :meth:`_seq` for every length of ``lengths`` not yet seen, in one vectorised call.

        The scheme's blocks of a packed layout are per sequence (axis ``S``), so laying the
        missing lengths out together gives each one's ``_seq`` entry exactly, at the cost of
        one layout instead of one per length: the planner asks about hundreds of distinct
        lengths per degree.
        """
        missing = sorted({int(x) for x in lengths if int(x) > 0 and (int(x), degree) not in self._memo})
        if len(missing) < 2:
            return
        per_call = max(1, (1 << 20) // (degree * degree))  # a lock-step scheme's blocks grow with d^2
        for at in range(0, len(missing), per_call):
            part = missing[at : at + per_call]
            cu = np.concatenate([[0], np.cumsum(part)])
            b = self._scheme.blocks(shard_layout(cu, degree), causal=True)
            fwd, bwd = self._grid.block(b.q_len, b.k_len, b.causal).sum(-1) * self._attn_scale
            if b.head_share != 1.0:
                fwd, bwd = fwd * b.head_share, bwd * b.head_share
            counts = tokens_per_rank(np.asarray(part), degree).astype(np.float64)
            for i, length in enumerate(part):
                self._memo[(length, degree)] = (fwd[..., i], bwd[..., i], counts[i])

    # ------------------------------------------------------------------ CostFn
    def group_time(self, seqlens: Sequence[int], degree: int) -> float:
        """Seconds for ``degree`` ranks to run forward+backward (all layers) on ``seqlens``.

        ``inf`` for a degree the scheme cannot run for this model (:meth:`check_degree`), so
        planners that minimise time never choose it.
        """
        degree = int(degree)
        if degree < 1 or degree > self.world_size:
            raise FcpTuneError(f"degree must be in [1, {self.world_size}], got {degree}")
        if not self._scheme.feasible(degree, self.model):
            return math.inf  # the scheme cannot run it (ulysses: degree must divide H_kv): never the cheapest
        self._fill(seqlens, degree)
        counted = Counter(int(x) for x in seqlens)
        if min(counted, default=0) < 0:
            raise FcpTuneError(f"sequence lengths must be >= 0, got {min(counted)}")
        counted.pop(0, None)
        if not counted:
            return 0.0
        # Every distinct length's memoised arrays times its multiplicity: summed one by one for a
        # few lengths, in one tensordot for many (the planner's pools hold hundreds).
        parts = [self._seq(length, degree) for length in counted]
        if len(parts) <= 8:
            fwd = bwd = cnt = 0.0
            for (f, b, c), times in zip(parts, counted.values()):
                fwd, bwd, cnt = fwd + times * f, bwd + times * b, cnt + times * c
        else:
            times = np.fromiter(counted.values(), dtype=np.float64, count=len(counted))
            fwd, bwd, cnt = (np.tensordot(times, np.stack([p[i] for p in parts]), axes=1) for i in range(3))
        layers = self.model.layers
        if self._recompute_attn:  # recompute runs the attention forward again inside backward
            bwd = bwd + self._recompute_attn * fwd
        core = max(0.0, self._core_s_per_token + self._core_slope * (degree - 1))
        linear = cnt * (self._lin_s_per_token + self._recompute_lin_s_per_token + layers * core) + self._wave_s
        if degree == 1:
            return float(layers * (fwd.sum(axis=0)[0] + bwd.sum(axis=0)[0]) + linear[0])
        steps = self._scheme.comm_steps(degree, float(cnt.max()), self.model)
        if not self._scheme.lockstep:
            comm = 0.0
            for c in steps:
                comm += self._comm.time(c.op, degree, c.nbytes)
            return float(np.max(layers * (fwd.sum(axis=0) + bwd.sum(axis=0) + comm) + linear))
        phases = []
        for phase, compute in (("forward", fwd), ("backward", bwd)):
            overlap, exposed = np.zeros(compute.shape[0]), 0.0
            for c in steps:
                if c.phase == phase:
                    t = self._comm.time(c.op, degree, c.nbytes)
                    if c.during:
                        overlap[list(c.during)] += t
                    else:
                        exposed += t
            phases.append(np.maximum(compute.max(axis=1), overlap).sum() + exposed)
        return float(layers * (phases[0] + phases[1]) + linear.max())

    def tabulated(self) -> "TabulatedCost":
        """This model's tabulated form for planning (:mod:`fcp_tune.planner.table`), one per instance.

        Its entries come from :meth:`group_time` itself, filled as the planner asks, and are
        kept with this model's other memos, so they are computed once across batches.
        """
        table = self._memo.get("tabulated")
        if table is None:
            from fcp_tune.planner.table import TabulatedCost

            table = self._memo["tabulated"] = TabulatedCost(self)
        return table

    def check_degree(self, degree: int) -> None:
        """Raise :class:`FcpTuneError` naming the scheme's rule when it cannot run ``degree`` for the model."""
        why = self._scheme.degree_error(int(degree), self.model.heads, self.model.kv_heads)
        if why is not None:
            raise FcpTuneError(f"scheme {self.scheme}: {why}")

    # ------------------------------------------------------------------ whole steps
    def grad_sync_time(self, ranks: int | None = None) -> float:
        """All-reduce of every gradient (model dtype) over ``ranks`` (default: the world).

        A distributed optimizer's reduce-scatter plus all-gather move the same bytes.
        """
        n = self.world_size if ranks is None else ranks
        per_gpu = self.model.num_params() / self.model.training.tensor_parallel
        return self.comm_time("all_reduce", n, per_gpu * self.model.dtype_bytes)

    def optimizer_time(self, ranks: int | None = None) -> float:
        """Adam step on one GPU: its share of the parameters (sharded optimizers split it over ``ranks``)."""
        n = self.world_size if ranks is None else ranks
        share = self.model.num_params() / self.model.training.tensor_parallel
        if self.model.training.sharding != "none":
            share /= n
        return share * self.profile.memory.optimizer_s_per_param

    def static_memory(self, ranks: int | None = None) -> float:
        """Weights, gradients and optimizer state on one GPU, sharded as the model is trained
        over ``ranks`` replicas (default: the world), in bytes (:func:`fcp_tune.memory.state_bytes`)."""
        return memory.state_bytes(self.model, self.world_size if ranks is None else ranks)

    def group_memory(self, seqlens: Sequence[int], degree: int) -> float:
        """Peak activation bytes on a GPU of the busiest rank of a group.

        The layers' activations for the model's recompute mode, the logits and their fp32
        copy (:func:`fcp_tune.memory.activation_bytes`), and what the scheme keeps per layer
        for backward (:meth:`~fcp_tune.schemes.base.Scheme.kept_bytes`: allgather the
        gathered K/V, ulysses the head-layout output).
        """
        lengths = [int(x) for x in seqlens if int(x) > 0]
        if not lengths:
            return 0.0
        cnt = tokens_per_rank(lengths, degree).sum(axis=0)
        m = self.model
        kept = self._scheme.kept_bytes(degree, cnt, m) / m.training.tensor_parallel
        return memory.activation_bytes(m, float(np.max(cnt)), kept)

    def sequence_work(self, seqlen: int, token_budget: int | None = None) -> float:
        """Least rank-seconds of one sequence alone: ``min d * (group_time([L], d) - wave_s)``.

        Over the degrees that fit it, from its memory minimum ``m``
        (:func:`~fcp_tune.policy.degrees.min_degree_for`, the rule every plan obeys: ``ceil(L /
        token_budget)``, more for a few lengths at an odd budget; 1 without a budget) up to ``min(N, 2 m)``; more ranks only add communication and
        shrink kernels. The per-call fixed cost is left out (a perfect plan pays it once per
        rank, see :meth:`ideal_time`). Memoised per (length, budget).
        """
        key = ("work", int(seqlen), token_budget)
        hit = self._memo.get(key)
        if hit is None:
            m = 1 if token_budget is None else min_degree_for(int(seqlen), int(token_budget))
            top = min(self.world_size, 2 * m)
            hit = min((d * (self.group_time([int(seqlen)], d) - self._wave_s) for d in range(m, top + 1)),
                      default=float("inf"))
            self._memo[key] = hit
        return hit

    def ideal_time(self, seqlens: Sequence[int], ranks: int, token_budget: int | None = None) -> float:
        """The bound no plan beats: all work at its cheapest fitting degree spread over ``ranks``.

        ``sum(sequence_work) / ranks`` plus the fixed per-call cost once, the gradient
        all-reduce and the optimizer step.
        """
        work = sum(self.sequence_work(int(x), token_budget) for x in seqlens)
        return work / ranks + self._wave_s + self.grad_sync_time(ranks) + self.optimizer_time(ranks)

    def predict(self, plan: Plan, seqlens: Sequence[int], token_budget: int | None = None) -> Prediction:
        """Step time, per-rank busy time and peak memory, ideal time and efficiency of ``plan``.

        ``token_budget`` (the policy's) sets the degrees the ideal bound may use; without it
        every sequence is costed on one rank.
        """
        n = plan.world_size
        if n > self.world_size:
            raise FcpTuneError(f"plan has {n} ranks but the cost model was built for {self.world_size}")
        busy, waves, group_times = [], [], []
        peak = np.zeros(n)
        for wave in plan.waves:
            row = np.zeros(n)
            mem = np.zeros(n)
            times = []
            for g in wave.groups:
                self.check_degree(g.size)
                lens = [int(seqlens[s]) for s in g.seq_ids]
                times.append(self.group_time(lens, g.size))
                row[g.start : g.start + g.size] = times[-1]
                mem[g.start : g.start + g.size] = self.group_memory(lens, g.size)
            busy.append(tuple(float(x) for x in row))
            waves.append(float(row.max()) if n else 0.0)
            group_times.append(times)
            peak = np.maximum(peak, mem)
        sync, opt = self.grad_sync_time(n), self.optimizer_time(n)
        fixed = sync + opt
        # Waves are not synchronised: a group starts when its ranks are free (critical path).
        step = max(finish_times(plan, group_times), default=0.0) + fixed
        ideal = self.ideal_time(seqlens, n, token_budget)
        return Prediction(
            wave_times=tuple(waves), rank_busy=tuple(busy), grad_sync_s=sync, optimizer_s=opt, step_time=step,
            peak_memory_bytes=tuple(float(x) + self.static_memory(n) for x in peak),
            ideal_time=ideal, efficiency=ideal / step if step > 0 else 1.0,
        )
