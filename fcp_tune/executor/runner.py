"""Run training steps for one or more policies side by side and summarise what was measured.

``run_training`` starts N local gloo processes (or, under torchrun, uses the environment:
NCCL when CUDA is present). Every policy gets its own identically seeded model replica;
step ``s`` of every policy sees the same global batch, and the policies alternate step by
step (A B A B) so slow drifts of the machine hit them all alike.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist

from fcp_tune.executor.model import build_model
from fcp_tune.errors import FcpTuneError
from fcp_tune.executor.step import PolicyState, StepRecord, train_step
from fcp_tune.hardware import usable_cores
from fcp_tune.integration import GroupPool, PlanAhead
from fcp_tune.launch import OPTIMIZER_MODULES, check_run_world, init_from_env, run_local, under_torchrun
from fcp_tune.limits import MAX_STEPS, check_float, check_int, check_seed, check_timeout
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.planner import Plan, candidate_ranges
from fcp_tune.planner.cost import CostFn, DefaultCost, feasible_cost, finish_times
from fcp_tune.planner.vocab import per_rank_count
from fcp_tune.policy import Policy
from fcp_tune.schemes import get_scheme
from fcp_tune.workload import BatchSampler, Workload


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; identical on every rank."""

    policies: tuple[tuple[str, Policy], ...]  # (name, policy); the first is the one under test
    workload: Workload
    model: ModelConfig
    steps: int = 6
    warmup: int = 1
    seed: int = 0
    lr: float = 1e-3
    cost: Optional[CostFn] = None  # the planner's cost function (None: its default cost)
    plan_ahead: bool = True  # plan step k+1 on a background thread while step k trains
    repeats: int = 1  # rounds of the measured steps (the warm-up runs once)
    profile: str = ""  # where ``cost`` came from, for the report

    def __post_init__(self) -> None:
        if not self.policies:
            raise ValueError("at least one policy is needed")
        names = [n for n, _ in self.policies]
        if len(set(names)) != len(names):
            raise ValueError(f"policy names must be unique, got {names}")
        check_int("steps", self.steps, 1, MAX_STEPS)
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or not 0 <= self.warmup < self.steps:
            raise FcpTuneError(f"warmup must be in [0, steps) = [0, {self.steps}), got {self.warmup!r}")
        check_int("repeats", self.repeats, 1, MAX_STEPS)
        check_seed("seed", self.seed)
        check_float("lr", self.lr, 0.0, lo_open=True)
        sizes = {p.world_size for _, p in self.policies}
        if len(sizes) != 1:
            raise ValueError(f"all policies must have the same world size, got {sorted(sizes)}")
        check_run_world("nproc", self.world_size)
        longest = max(self.workload.seqlens)
        for name, p in self.policies:  # a fixed-degree policy must not need a degree its scheme cannot run
            if p.rule.aligned:
                for d in p.possible_degrees(longest):
                    try:
                        get_scheme(p.scheme).check_degree(d, self.model.heads, self.model.kv_heads)
                    except ValueError as exc:
                        raise ValueError(f"policy {name}: {exc}") from None

    @property
    def world_size(self) -> int:
        return self.policies[0][1].world_size

    def planner_cost(self, policy: Policy) -> CostFn:
        """The cost ``policy`` is planned with: :attr:`cost` (or the default), limited to the
        degrees its scheme can run for :attr:`model` (so Ulysses never gets one it cannot)."""
        return feasible_cost(self.cost or DefaultCost(), policy.scheme, self.model, self.world_size)


def train_rank(rank: int, world: int, cfg: RunConfig, events=None) -> dict[str, Any]:
    """Body of every rank: build replicas and groups, run the interleaved steps, return records."""
    if world != cfg.world_size:
        raise ValueError(f"the policy is for {cfg.world_size} ranks but {world} processes are running")
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    pool = GroupPool((), world, max_per_rank=max_communicators(cfg, world))  # groups are created lazily
    states = []
    for name, policy in cfg.policies:
        model = build_model(cfg.model, cfg.seed, device)
        params = [p for p in model.parameters()]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        opt.zero_grad(set_to_none=False)
        states.append(PolicyState(name, policy, model, opt, params))
    sampler = BatchSampler(cfg.workload, seed=cfg.seed)
    batches = [sampler.batch(step) for step in range(cfg.steps)]
    costs = {st.name: cfg.planner_cost(st.policy) for st in states}
    jobs = [(rnd, step, st) for rnd, step in _job_order(cfg) for st in states]  # the interleaved order
    records: list[tuple[int, StepRecord]] = []
    with PlanAhead() as ahead:

        def submit(i: int) -> None:
            if cfg.plan_ahead and i < len(jobs):
                _, step, st = jobs[i]
                ahead.submit(i, batches[step], st.policy, costs[st.name])

        submit(0)
        for i, (rnd, step, st) in enumerate(jobs):
            planned = ahead.take(i) if cfg.plan_ahead else None
            submit(i + 1)  # planned while this step trains
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            rec = train_step(st, batches[step], step, pool, cfg.seed, device, costs[st.name], planned)
            if device.type == "cuda":
                rec = replace(rec, peak_bytes=int(torch.cuda.max_memory_allocated(device)))
            records.append((rnd, rec))
            if events is not None and rank == 0:
                events.put(("step", st.name, step))
    return {"records": records, "communicators": pool.communicators, "groups": len(pool),
            "per_rank": pool.per_rank, "cores": usable_cores()}


def max_communicators(cfg: RunConfig, world: int) -> Optional[int]:
    """The per-rank communicator bound the run's policies promise (``None``: no bound).

    Adaptive policies: their vocabulary's per-rank count; fixed-degree kinds: that of their
    aligned ranges; with several policies side by side, that of all their ranges together.
    """
    longest = max(cfg.workload.seqlens)
    if any(p.kind == "adaptive" and p.max_communicators == 0 for _, p in cfg.policies):
        return None
    ranges = {r for _, p in cfg.policies for r in candidate_ranges(p, max_seqlen=longest)}
    return per_rank_count(sorted(ranges), world)


# ---------------------------------------------------------------- what a run measured
def busy_critical_path(plan: Plan, records: Sequence[StepRecord]) -> float:
    """The plan's critical path of busy time: what the step would take if every rank had a core
    to itself and nothing else ran on the machine.

    Each group of each wave lasts the most CPU seconds any of its ranks spent in that wave
    (``StepRecord.wave_cpu_s``: computing, not waiting) plus the least time any of its ranks
    was blocked in communication in it (the last rank to arrive waits for the transfer only,
    not for late peers); a group starts when all its ranks are free
    (:func:`~fcp_tune.planner.cost.finish_times`, as the cost model predicts). Then the
    gradient all-reduce (least over ranks, after a barrier) and the optimizer (most over ranks).
    """
    if any(len(r.wave_cpu_s) != len(plan.waves) for r in records):
        raise RuntimeError("a rank recorded no per-wave times for this plan")
    times = [
        [max(records[r].wave_cpu_s[w] for r in range(g.start, g.stop))
         + min(records[r].wave_comm_s[w] for r in range(g.start, g.stop)) for g in wave.groups]
        for w, wave in enumerate(plan.waves)
    ]
    return max(finish_times(plan, times), default=0.0) + min(r.sync_s for r in records) + max(r.opt_s for r in records)


@dataclass(frozen=True)
class Step:
    """One step of one policy: every rank's :class:`StepRecord` (rank order) and what follows.

    ``round``: which repeat of the batches it belongs to (``RunConfig.repeats``); ``warmup``:
    excluded from the summary; ``predicted_s``: the cost model's step time for the executed
    plan (None without a cost model for the policy's scheme).
    """

    ranks: tuple[StepRecord, ...]
    round: int = 0
    warmup: bool = False
    predicted_s: Optional[float] = None

    def __post_init__(self) -> None:
        if not self.ranks or [r.rank for r in self.ranks] != list(range(len(self.ranks))):
            raise ValueError("ranks must hold one record per rank, in rank order")

    @property
    def first(self) -> StepRecord:
        return self.ranks[0]

    step = property(lambda self: self.first.step)
    tokens = property(lambda self: self.first.tokens)
    loss = property(lambda self: self.first.loss)
    waves = property(lambda self: self.first.waves)
    layout = property(lambda self: self.first.layout)
    plan_digest = property(lambda self: self.first.plan_digest)
    new_groups = property(lambda self: self.first.new_groups)
    plan = property(lambda self: self.first.plan)  # recorded on rank 0
    seqlens = property(lambda self: self.first.seqlens)

    def per_rank(self, field_name: str) -> tuple[float, ...]:
        """One :class:`StepRecord` field over the ranks."""
        return tuple(getattr(r, field_name) for r in self.ranks)

    busy_s = property(lambda self: self.per_rank("busy_s"))
    comm_s = property(lambda self: self.per_rank("comm_s"))
    idle_s = property(lambda self: self.per_rank("idle_s"))
    plan_s = property(lambda self: self.per_rank("plan_s"))
    waves_s = property(lambda self: self.per_rank("waves_s"))
    sync_s = property(lambda self: self.per_rank("sync_s"))
    opt_s = property(lambda self: self.per_rank("opt_s"))
    plan_wait_s = property(lambda self: self.per_rank("plan_wait_s"))

    @property
    def wall_s(self) -> float:
        """The slowest rank's wall-clock seconds."""
        return max(r.wall_s for r in self.ranks)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s

    @property
    def peak_bytes(self) -> int:
        return max(r.peak_bytes for r in self.ranks)

    @property
    def plan_ms(self) -> float:
        return 1e3 * max(self.plan_s)

    @property
    def rank_cpu_s(self) -> tuple[float, ...]:
        """Per rank: CPU seconds in its groups (sum over waves)."""
        return tuple(float(sum(r.wave_cpu_s)) for r in self.ranks)

    @property
    def critical_path_s(self) -> float:
        """:func:`busy_critical_path` of the executed plan."""
        if self.plan is None:
            raise RuntimeError(f"step {self.step}: no plan recorded")
        return busy_critical_path(Plan.from_dict(self.plan), self.ranks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "round": self.round, "warmup": self.warmup, "wall_s": self.wall_s,
            "critical_path_s": self.critical_path_s, "predicted_s": self.predicted_s, "tokens": self.tokens,
            "tokens_per_s": self.tokens_per_s, "loss": self.loss, "waves": self.waves, "layout": self.layout,
            "rank_cpu_s": list(self.rank_cpu_s), "peak_bytes": self.peak_bytes, "plan_ms": self.plan_ms,
            "plan_digest": self.plan_digest, "new_groups": self.new_groups, "plan": self.plan,
            "seqlens": self.seqlens, "ranks": [asdict(r) | {"plan": None, "seqlens": None} for r in self.ranks],
        }


# The measures a run reports per policy: wall-clock, and the plan's critical path of busy time.
MEASURES = ("critical_path", "wall")


@dataclass(frozen=True)
class Spread:
    """Median and range of one quantity over the repeats (rounds)."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        if not values:
            raise ValueError("no values")
        return cls(float(statistics.median(values)), float(min(values)), float(max(values)))

    def to_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high}


@dataclass(frozen=True)
class PolicyResult:
    name: str
    policy: dict
    steps: tuple[Step, ...]

    @property
    def measured(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if not s.warmup)

    @property
    def warmup(self) -> int:
        return sum(s.warmup for s in self.steps)

    def rounds(self) -> dict[int, tuple[Step, ...]]:
        """The measured steps of each round (each round runs the same batches)."""
        out: dict[int, list[Step]] = {}
        for s in self.measured:
            out.setdefault(s.round, []).append(s)
        return {k: tuple(v) for k, v in sorted(out.items())}

    def seconds(self, measure: str) -> dict[int, float]:
        """Per round: the summed seconds of its measured steps under ``measure`` (see :data:`MEASURES`)."""
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
        key = "critical_path_s" if measure == "critical_path" else "wall_s"
        return {k: float(sum(getattr(s, key) for s in v)) for k, v in self.rounds().items()}

    def tokens_per_s(self, measure: str = "critical_path") -> Spread:
        tokens = {k: sum(s.tokens for s in v) for k, v in self.rounds().items()}
        return Spread.of([tokens[k] / t for k, t in self.seconds(measure).items()])

    @property
    def predicted_s(self) -> Optional[float]:
        """The cost model's seconds for one round's measured steps (None without a prediction)."""
        first = next(iter(self.rounds().values()), ())
        if not first or any(s.predicted_s is None for s in first):
            return None
        return float(sum(s.predicted_s for s in first))

    @property
    def median_step_s(self) -> float:
        return statistics.median(s.wall_s for s in self.measured)


@dataclass(frozen=True)
class RunReport:
    world_size: int
    backend: str
    results: tuple[PolicyResult, ...]
    communicators: int  # communicating groups (size > 1) created, all lazily
    groups: int
    model: dict
    workload: str
    per_rank_communicators: int = 0  # the most of them any one rank belongs to
    cores: int = 0  # usable CPU cores of the machine (rank 0's)
    profile: str = ""  # what the planner's and the predictions' cost model came from ("" = default cost)
    repeats: int = 1

    @property
    def oversubscribed(self) -> bool:
        """More rank processes than cores on a CPU run: wall-clock then measures the OS scheduler."""
        return self.backend == "gloo" and 0 < self.cores < self.world_size

    def speedups(self, measure: str = "critical_path") -> dict[str, Spread]:
        """How much faster the first policy is than each: per round, the policy's seconds over
        the first's (same batches), median and range over the rounds."""
        base = self.results[0].seconds(measure)
        out = {}
        for r in self.results:
            mine = r.seconds(measure)
            out[r.name] = Spread.of([mine[k] / base[k] for k in base if base[k] > 0])
        return out

    def predicted_speedups(self) -> dict[str, Optional[float]]:
        """The cost model's ratio for the same plans: a policy's predicted seconds over the first's."""
        base = self.results[0].predicted_s
        return {r.name: (r.predicted_s / base if base and r.predicted_s is not None else None) for r in self.results}

    def to_dict(self) -> dict[str, Any]:
        ups = {m: self.speedups(m) for m in MEASURES}
        pred = self.predicted_speedups()
        return {
            "schema": "fcp-tune/run",
            "schema_version": 2,
            "world_size": self.world_size,
            "backend": self.backend,
            "cores": self.cores,
            "oversubscribed": self.oversubscribed,
            "compared_by": "critical_path",
            "profile": self.profile,
            "repeats": self.repeats,
            "communicators": self.communicators,
            "per_rank_communicators": self.per_rank_communicators,
            "groups": self.groups,
            "model": self.model,
            "workload": self.workload,
            "policies": [
                {
                    "name": r.name,
                    "policy": r.policy,
                    "tokens_per_s": {m: r.tokens_per_s(m).to_dict() for m in MEASURES},
                    "seconds_per_round": {m: list(r.seconds(m).values()) for m in MEASURES},
                    "speedup_of_first": {m: ups[m][r.name].to_dict() for m in MEASURES},
                    "predicted_s_per_round": r.predicted_s,
                    "predicted_speedup_of_first": pred[r.name],
                    "median_step_s": r.median_step_s,
                    "steps": [s.to_dict() for s in r.steps],
                }
                for r in self.results
            ],
        }


def _job_order(cfg: RunConfig) -> list[tuple[int, int]]:
    """``(round, step)`` in the order the policies run them: the warm-up steps once, then the
    measured steps ``repeats`` times; every policy runs each before the next (interleaved)."""
    warm = [(0, s) for s in range(cfg.warmup)]
    return warm + [(rnd, s) for rnd in range(cfg.repeats) for s in range(cfg.warmup, cfg.steps)]


def _predict(cost: Optional[CostFn], policy: Policy, step: Step) -> Optional[float]:
    predict = getattr(cost, "predict", None)
    if predict is None or getattr(cost, "scheme", None) != policy.scheme or step.plan is None:
        return None
    return float(predict(Plan.from_dict(step.plan), step.seqlens).step_time)


def summarise(cfg: RunConfig, per_rank: Sequence[dict[str, Any]], backend: str) -> RunReport:
    """Fold every rank's records into a :class:`RunReport`."""
    world = len(per_rank)
    by_key: dict[tuple[str, int, int], list[StepRecord]] = {}
    for out in per_rank:
        for rnd, rec in out["records"]:
            by_key.setdefault((rec.policy, rnd, rec.step), []).append(rec)
    results = []
    for name, policy in cfg.policies:
        steps = []
        for rnd, step in _job_order(cfg):
            recs = tuple(sorted(by_key.get((name, rnd, step), []), key=lambda r: r.rank))
            if len(recs) != world:
                raise RuntimeError(f"step {step} of {name}: {len(recs)} of {world} ranks reported")
            s = Step(recs, round=rnd, warmup=step < cfg.warmup)
            steps.append(replace(s, predicted_s=_predict(cfg.cost, policy, s)))
        results.append(PolicyResult(name, policy.to_dict(), tuple(steps)))
    return RunReport(
        world_size=world, backend=backend, results=tuple(results),
        communicators=per_rank[0]["communicators"], groups=per_rank[0]["groups"],
        model=cfg.model.to_dict(), workload=cfg.workload.name,
        per_rank_communicators=max(out["per_rank"] for out in per_rank),
        cores=per_rank[0].get("cores", 0), profile=cfg.profile, repeats=cfg.repeats,
    )


def run_training(
    cfg: RunConfig,
    timeout: float = 600.0,
    collective_timeout: float = 60.0,
    on_event: Optional[Callable[[Any], None]] = None,
) -> Optional[RunReport]:
    """Run ``cfg`` and return the report (None on non-zero ranks under torchrun).

    Locally this forks ``cfg.world_size`` gloo processes; a failing rank stops the run
    with :class:`fcp_tune.launch.RankFailure` naming it.
    """
    check_timeout("timeout", timeout)
    check_timeout("collective_timeout", collective_timeout)
    if under_torchrun():
        backend = init_from_env(collective_timeout)
        out = train_rank(dist.get_rank(), dist.get_world_size(), cfg)
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, out)
        return summarise(cfg, gathered, backend) if dist.get_rank() == 0 else None
    per_rank = run_local(
        train_rank, cfg.world_size, args=(cfg,), timeout=timeout,
        collective_timeout=collective_timeout, on_event=on_event, preload=OPTIMIZER_MODULES,
    )
    return summarise(cfg, per_rank, "gloo")
