"""Run training steps for one or more policies side by side and summarise what was measured.

``run_training`` starts N local gloo processes (or, under torchrun, uses the environment:
NCCL when CUDA is present). Every policy gets its own identically seeded model replica;
step ``s`` of every policy sees the same global batch, and the policies alternate step by
step (A B A B) so slow drifts of the machine hit them all alike.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist

from fcp_tune.executor.model import build_model
from fcp_tune.errors import FcpTuneError
from fcp_tune.executor.step import PolicyState, StepRecord, train_step
from fcp_tune.integration import GroupPool, PlanAhead
from fcp_tune.launch import init_from_env, run_local, under_torchrun
from fcp_tune.limits import MAX_STEPS, check_float, check_int, check_local_procs, check_seed, check_timeout
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.planner import candidate_ranges
from fcp_tune.planner.cost import CostFn, DefaultCost, feasible_cost
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

    def __post_init__(self) -> None:
        if not self.policies:
            raise ValueError("at least one policy is needed")
        names = [n for n, _ in self.policies]
        if len(set(names)) != len(names):
            raise ValueError(f"policy names must be unique, got {names}")
        check_int("steps", self.steps, 1, MAX_STEPS)
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or not 0 <= self.warmup < self.steps:
            raise FcpTuneError(f"warmup must be in [0, steps) = [0, {self.steps}), got {self.warmup!r}")
        check_seed("seed", self.seed)
        check_float("lr", self.lr, 0.0, lo_open=True)
        sizes = {p.world_size for _, p in self.policies}
        if len(sizes) != 1:
            raise ValueError(f"all policies must have the same world size, got {sorted(sizes)}")
        if not under_torchrun():  # a local run forks one process per rank
            check_local_procs("nproc (ranks of a local run)", self.world_size)
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
    jobs = [(step, st) for step in range(cfg.steps) for st in states]  # the interleaved order
    records: list[StepRecord] = []
    with PlanAhead() as ahead:

        def submit(i: int) -> None:
            if cfg.plan_ahead and i < len(jobs):
                step, st = jobs[i]
                ahead.submit(i, batches[step], st.policy, costs[st.name])

        submit(0)
        for i, (step, st) in enumerate(jobs):
            planned = ahead.take(i) if cfg.plan_ahead else None
            submit(i + 1)  # planned while this step trains
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            rec = train_step(st, batches[step], step, pool, cfg.seed, device, costs[st.name], planned)
            if device.type == "cuda":
                rec = StepRecord(**{**asdict(rec), "peak_bytes": int(torch.cuda.max_memory_allocated(device))})
            records.append(rec)
            if events is not None and rank == 0:
                events.put(("step", st.name, step))
    return {"records": [asdict(r) for r in records], "communicators": pool.communicators, "groups": len(pool),
            "per_rank": pool.per_rank}


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


@dataclass(frozen=True)
class StepSummary:
    """One policy's step, over all ranks."""

    step: int
    wall_s: float  # slowest rank
    tokens: int
    tokens_per_s: float
    loss: float
    waves: int
    layout: str
    busy_s: tuple[float, ...]  # per rank
    comm_s: tuple[float, ...]
    idle_s: tuple[float, ...]
    peak_bytes: int  # largest over ranks
    plan_ms: float
    # Per-rank phases and the executed plan's digest (see StepRecord), for ``fcp-tune validate``.
    plan_digest: int = 0
    plan_s: tuple[float, ...] = ()
    waves_s: tuple[float, ...] = ()
    sync_s: tuple[float, ...] = ()
    opt_s: tuple[float, ...] = ()
    plan_wait_s: tuple[float, ...] = ()  # per rank: planning not hidden behind the previous step
    new_groups: int = 0  # process groups created (lazily) for this step's plan
    plan: Optional[dict] = None  # the executed plan (Plan.to_dict)
    seqlens: Optional[list] = None  # the global batch (sequence lengths) it planned


@dataclass(frozen=True)
class PolicyResult:
    name: str
    policy: dict
    steps: tuple[StepSummary, ...]
    warmup: int

    @property
    def measured(self) -> tuple[StepSummary, ...]:
        return self.steps[self.warmup :]

    @property
    def tokens_per_s(self) -> float:
        m = self.measured
        return sum(s.tokens for s in m) / sum(s.wall_s for s in m)

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

    def speedups(self) -> dict[str, float]:
        """Tokens/s of the first policy divided by each policy's tokens/s."""
        base = self.results[0].tokens_per_s
        return {r.name: base / r.tokens_per_s for r in self.results}

    def to_dict(self) -> dict[str, Any]:
        return {
            "world_size": self.world_size,
            "backend": self.backend,
            "communicators": self.communicators,
            "per_rank_communicators": self.per_rank_communicators,
            "groups": self.groups,
            "model": self.model,
            "workload": self.workload,
            "policies": [
                {
                    "name": r.name,
                    "policy": r.policy,
                    "tokens_per_s": r.tokens_per_s,
                    "median_step_s": r.median_step_s,
                    "speedup_of_first": self.speedups()[r.name],
                    "steps": [asdict(s) for s in r.steps],
                }
                for r in self.results
            ],
        }


def summarise(cfg: RunConfig, per_rank: Sequence[dict[str, Any]], backend: str) -> RunReport:
    """Fold every rank's records into a :class:`RunReport`."""
    world = len(per_rank)
    by_key: dict[tuple[str, int], list[dict]] = {}
    for out in per_rank:
        for rec in out["records"]:
            by_key.setdefault((rec["policy"], rec["step"]), []).append(rec)
    results = []
    for name, policy in cfg.policies:
        steps = []
        for step in range(cfg.steps):
            recs = sorted(by_key[(name, step)], key=lambda r: r["rank"])
            if len(recs) != world:
                raise RuntimeError(f"step {step} of {name}: {len(recs)} of {world} ranks reported")
            wall = max(r["wall_s"] for r in recs)
            steps.append(
                StepSummary(
                    step=step, wall_s=wall, tokens=recs[0]["tokens"], tokens_per_s=recs[0]["tokens"] / wall,
                    loss=recs[0]["loss"], waves=recs[0]["waves"], layout=recs[0]["layout"],
                    busy_s=tuple(r["busy_s"] for r in recs), comm_s=tuple(r["comm_s"] for r in recs),
                    idle_s=tuple(r["idle_s"] for r in recs), peak_bytes=max(r["peak_bytes"] for r in recs),
                    plan_ms=1e3 * max(r["plan_s"] for r in recs),
                    plan_digest=recs[0]["plan_digest"], plan_s=tuple(r["plan_s"] for r in recs),
                    waves_s=tuple(r["waves_s"] for r in recs), sync_s=tuple(r["sync_s"] for r in recs),
                    opt_s=tuple(r["opt_s"] for r in recs),
                    plan_wait_s=tuple(r["plan_wait_s"] for r in recs), new_groups=recs[0]["new_groups"],
                    plan=recs[0]["plan"], seqlens=recs[0]["seqlens"],
                )
            )
        results.append(PolicyResult(name, policy.to_dict(), tuple(steps), cfg.warmup))
    return RunReport(
        world_size=world, backend=backend, results=tuple(results),
        communicators=per_rank[0]["communicators"], groups=per_rank[0]["groups"],
        model=cfg.model.to_dict(), workload=cfg.workload.name,
        per_rank_communicators=max(out["per_rank"] for out in per_rank),
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
        collective_timeout=collective_timeout, on_event=on_event,
    )
    return summarise(cfg, per_rank, "gloo")
