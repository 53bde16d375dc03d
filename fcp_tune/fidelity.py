"""Cost-model fidelity: measured executor steps against ``CostModel.predict`` for the same plans.

:func:`validate` trains a few steps of every policy with the bundled executor
(:func:`fcp_tune.executor.run_training`, policies interleaved step by step in one process
set, planning with a :class:`~fcp_tune.costmodel.CostModel` built from the profile) and
then, for every policy and step, takes the batch and the plan the executor recorded (their
digest must match the executed one; nothing is re-sampled or re-planned) and compares:

- **step time**: the slowest rank's wall time of the step against ``predict(...).step_time``
  (the plan's groups, gradient all-reduce and optimizer). Planning is excluded by default: the cost
  model prices executing a plan, not making one (the executor plans ahead of the step, on a
  background thread); the planner's milliseconds are reported next to it, and
  ``include_planning`` counts the part of them that was not hidden;
- **busy time per rank**: the seconds the rank spent in its groups (forward + backward,
  context-parallel communication and in-group waits: ``StepRecord.waves_s``) against the
  predicted sum over waves of its group's time.

Errors are ``100 * (predicted - measured) / measured`` (positive: the model is
pessimistic); MAPE is the mean of their absolute values over the measured (non-warm-up)
steps. Everything returned is frozen data with a plain-dict form for ``--json``.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

from fcp_tune.costmodel import CostModel
from fcp_tune.errors import FcpTuneError
from fcp_tune.limits import check_timeout
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.planner import Plan
from fcp_tune.policy import Policy
from fcp_tune.profile.lookup import BUNDLED_CPU_PROFILE, default_profile_path  # noqa: F401 - re-exported
from fcp_tune.profile.schema import Profile
from fcp_tune.workload import Workload

TARGET_MAPE_PCT = 10.0  # the target at 2 local processes (the FCP paper reports 4-8 %)


# ---------------------------------------------------------------------- error math
def percent_error(measured: float, predicted: float) -> float:
    """``100 * (predicted - measured) / measured``; ``measured`` must be > 0."""
    if not measured > 0:
        raise FcpTuneError(f"measured time must be > 0 to compute an error, got {measured!r}")
    return 100.0 * (float(predicted) - float(measured)) / float(measured)


def mape(measured: Sequence[float], predicted: Sequence[float]) -> float:
    """Mean absolute percentage error of ``predicted`` against ``measured``, in percent."""
    if len(measured) != len(predicted):
        raise FcpTuneError(f"mape: {len(measured)} measured values but {len(predicted)} predicted")
    if not measured:
        raise FcpTuneError("mape: no values")
    return statistics.fmean(abs(percent_error(m, p)) for m, p in zip(measured, predicted))


# ---------------------------------------------------------------------- report types
@dataclass(frozen=True)
class StepValidation:
    """One policy's step: what the executor measured and what the cost model predicted.

    Times are seconds; per-rank tuples are indexed by rank. ``busy_error_pct`` is None for
    a rank the plan gives no work. ``*_sync_s`` / ``*_opt_s`` (gradient all-reduce,
    optimizer) and ``idle_s`` (the barrier wait) are the slowest rank's, for diagnosis.
    """

    step: int
    warmup: bool
    layout: str
    sequences: int
    tokens: int
    measured_s: float
    predicted_s: float
    error_pct: float
    measured_busy_s: tuple[float, ...]
    predicted_busy_s: tuple[float, ...]
    busy_error_pct: tuple[Optional[float], ...]
    plan_ms: float
    idle_s: float
    measured_sync_s: float
    predicted_sync_s: float
    measured_opt_s: float
    predicted_opt_s: float


@dataclass(frozen=True)
class PolicyValidation:
    """Every step of one policy; aggregates cover the measured (non-warm-up) steps."""

    name: str
    kind: str
    policy: dict
    steps: tuple[StepValidation, ...]

    @property
    def measured(self) -> tuple[StepValidation, ...]:
        return tuple(s for s in self.steps if not s.warmup)

    @property
    def step_mape(self) -> float:
        m = self.measured
        return mape([s.measured_s for s in m], [s.predicted_s for s in m])

    @property
    def bias_pct(self) -> float:
        """Mean signed error: > 0 the model over-predicts on average."""
        return statistics.fmean(s.error_pct for s in self.measured)

    @property
    def busy_mape(self) -> float:
        return busy_mape(self.measured)

    @property
    def measured_mean_s(self) -> float:
        return statistics.fmean(s.measured_s for s in self.measured)

    @property
    def predicted_mean_s(self) -> float:
        return statistics.fmean(s.predicted_s for s in self.measured)

    @property
    def plan_ms_mean(self) -> float:
        return statistics.fmean(s.plan_ms for s in self.measured)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "policy": self.policy,
            "step_mape_pct": self.step_mape, "busy_mape_pct": self.busy_mape, "bias_pct": self.bias_pct,
            "measured_mean_s": self.measured_mean_s, "predicted_mean_s": self.predicted_mean_s,
            "plan_ms_mean": self.plan_ms_mean, "steps": [asdict(s) for s in self.steps],
        }


def busy_mape(steps: Sequence[StepValidation]) -> float:
    """MAPE of per-rank busy time over every (step, rank) the plan gives work."""
    pairs = [(m, p) for s in steps for m, p in zip(s.measured_busy_s, s.predicted_busy_s) if p > 0]
    return mape([m for m, _ in pairs], [p for _, p in pairs])


@dataclass(frozen=True)
class ValidationReport:
    """Fidelity of one profile's cost model against one executor run.

    ``load_before`` / ``load_after``: the host's 1-minute load average around the run (the
    measured side is wall-clock time; other work on the host inflates it).
    """

    world_size: int
    backend: str
    model: str
    workload: str
    profile: str
    profile_label: str
    profile_created: str
    scheme: str
    steps: int
    warmup: int
    include_planning: bool
    policies: tuple[PolicyValidation, ...]
    load_before: float
    load_after: float

    @property
    def step_mape(self) -> float:
        """Step-time MAPE over every policy's measured steps."""
        m = [s for p in self.policies for s in p.measured]
        return mape([s.measured_s for s in m], [s.predicted_s for s in m])

    @property
    def busy_mape(self) -> float:
        return busy_mape([s for p in self.policies for s in p.measured])

    @property
    def worst_step_mape(self) -> float:
        return max(p.step_mape for p in self.policies)

    def meets(self, target_pct: float = TARGET_MAPE_PCT) -> bool:
        """Whether every policy's step-time MAPE is within ``target_pct``."""
        return self.worst_step_mape <= target_pct

    def to_dict(self) -> dict[str, Any]:
        return {
            "world_size": self.world_size, "backend": self.backend, "model": self.model,
            "workload": self.workload, "profile": self.profile, "profile_label": self.profile_label,
            "profile_created": self.profile_created, "scheme": self.scheme, "steps": self.steps,
            "warmup": self.warmup, "include_planning": self.include_planning,
            "load_before": self.load_before, "load_after": self.load_after,
            "step_mape_pct": self.step_mape, "busy_mape_pct": self.busy_mape,
            "target_mape_pct": TARGET_MAPE_PCT, "meets_target": self.meets(),
            "policies": [p.to_dict() for p in self.policies],
        }


# ---------------------------------------------------------------------- the comparison
def _load() -> float:
    try:
        return float(os.getloadavg()[0])
    except OSError:  # not available on this platform
        return float("nan")


def compare_step(
    summary: Any, predictor: CostModel, warmup: bool, include_planning: bool = False, name: str = "",
) -> StepValidation:
    """Compare one executed step (a :class:`~fcp_tune.executor.runner.Step`) with its prediction.

    Uses the plan and batch the executor recorded (``summary.plan`` / ``summary.seqlens``);
    raises ``RuntimeError`` if the plan's digest differs from the executed one.
    """
    batch, recorded = summary.seqlens, summary.plan
    if batch is None or recorded is None:
        raise RuntimeError(f"step {summary.step} of {name}: the executor recorded no plan or batch")
    plan = Plan.from_dict(recorded)
    world = plan.world_size
    if plan.digest() != summary.plan_digest:
        raise RuntimeError(
            f"step {summary.step} of {name}: the recorded plan has digest {plan.digest()} but the "
            f"executor ran {summary.plan_digest}"
        )
    pred = predictor.predict(plan, batch)
    plan_s = max(summary.plan_s)
    # Ranks wait for their plans (made ahead, in the background, or inline) and then
    # synchronise (digest check), so the slowest rank's wall minus the slowest wait for a
    # plan is the step's execution time.
    waited = max(summary.plan_wait_s)
    measured = summary.wall_s if include_planning else summary.wall_s - waited
    busy_pred = tuple(float(sum(w[r] for w in pred.rank_busy)) for r in range(world))
    busy_meas = tuple(float(x) for x in summary.waves_s)
    if len(busy_meas) != world:
        raise RuntimeError(f"step {summary.step} of {name}: no per-rank wave times recorded")
    return StepValidation(
        step=summary.step, warmup=warmup, layout=summary.layout, sequences=len(batch), tokens=int(sum(batch)),
        measured_s=measured, predicted_s=pred.step_time, error_pct=percent_error(measured, pred.step_time),
        measured_busy_s=busy_meas, predicted_busy_s=busy_pred,
        busy_error_pct=tuple(percent_error(m, p) if p > 0 else None for m, p in zip(busy_meas, busy_pred)),
        plan_ms=plan_s * 1e3, idle_s=max(summary.idle_s),
        measured_sync_s=max(summary.sync_s), predicted_sync_s=pred.grad_sync_s,
        measured_opt_s=max(summary.opt_s), predicted_opt_s=pred.optimizer_s,
    )


def validate(
    policies: Sequence[tuple[str, Policy]],
    workload: Workload,
    model: ModelConfig,
    profile: Profile,
    steps: int = 6,
    warmup: int = 1,
    seed: int = 0,
    include_planning: bool = False,
    profile_source: str = "",
    timeout: float = 600.0,
    on_event: Optional[Callable[[Any], None]] = None,
) -> Optional[ValidationReport]:
    """Run the executor under ``policies`` and compare every step with the cost model.

    ``policies``: ``(name, policy)`` pairs of one world size (the number of processes).
    The planner plans with a cost model of the first policy's scheme (as ``fcp-tune run
    --profile`` does); each policy's prediction uses its own scheme. Raises
    :class:`~fcp_tune.errors.FcpTuneError` naming the bad argument (a profile that cannot
    predict this world, bad steps/warmup, ...). Returns None on non-zero ranks under torchrun.
    """
    from fcp_tune.executor import RunConfig, run_training  # imports torch

    if not policies:
        raise FcpTuneError("policies: at least one (name, policy) pair is needed")
    # steps, warm-up, seed and world size are checked once, by RunConfig below; the timeout here,
    # before the cost models are built.
    check_timeout("timeout", timeout)
    world = policies[0][1].world_size
    sizes = sorted({p.world_size for _, p in policies})
    if len(sizes) != 1:
        raise FcpTuneError(f"policies: all must have the same world_size, got {sizes}")
    plan_cost = CostModel.from_profile(profile, model, scheme=policies[0][1].scheme, world_size=world)
    predictors = {plan_cost.scheme: plan_cost}
    for _, p in policies:
        if p.scheme not in predictors:
            predictors[p.scheme] = CostModel.from_profile(profile, model, scheme=p.scheme, world_size=world)
    cfg = RunConfig(tuple(policies), workload, model, steps=steps, warmup=warmup, seed=seed, cost=plan_cost)
    load_before = _load()
    report = run_training(cfg, timeout=timeout, on_event=on_event)
    load_after = _load()
    if report is None:
        return None
    results = []  # the executor recorded every step's batch and plan: nothing is re-sampled or re-planned
    for (name, policy), result in zip(cfg.policies, report.results):
        rows = tuple(
            compare_step(s, predictors[policy.scheme], warmup=s.warmup, include_planning=include_planning,
                         name=name)
            for s in result.steps
        )
        results.append(PolicyValidation(name, policy.kind, policy.to_dict(), rows))
    schemes = sorted({p.scheme for _, p in policies})
    return ValidationReport(
        world_size=report.world_size, backend=report.backend, model=model.name, workload=workload.name,
        profile=profile_source or profile.label, profile_label=profile.label, profile_created=profile.created,
        scheme="+".join(schemes), steps=steps, warmup=warmup, include_planning=include_planning,
        policies=tuple(results), load_before=load_before, load_after=load_after,
    )
