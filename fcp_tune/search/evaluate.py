"""Predicted step time of a policy over a fixed, seeded set of global batches.

The same evaluator scores search trials, baselines and ``fcp-tune simulate``: plan each
batch with the planner under the cost model, predict the step with the same cost model,
and average. Deterministic: the batches come from the workload's seeded sampler.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from fcp_tune.costmodel import CostModel
from fcp_tune.planner import candidate_ranges, plan_batch
from fcp_tune.policy import Policy
from fcp_tune.workload import BatchSampler, Workload


@dataclass(frozen=True)
class Score:
    """A policy's predicted performance over the evaluation batches."""

    step_s: float  # mean predicted step time
    tokens_per_s: float
    efficiency: float  # mean of ideal / predicted
    peak_memory_bytes: float  # largest over batches and ranks
    waves: float  # mean waves per step
    communicators: int  # process groups of size > 1 the policy may need

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Evaluator:
    """Scores policies on ``batches`` seeded global batches of ``workload`` at ``world_size`` ranks."""

    def __init__(self, cost: CostModel, workload: Workload, world_size: int, batches: int = 8, seed: int = 0) -> None:
        if batches < 1:
            raise ValueError(f"batches must be >= 1, got {batches}")
        self.cost = cost
        self.world_size = world_size
        self.batches: list[list[int]] = BatchSampler(workload, seed=seed).batches(batches)
        self.tokens = sum(sum(b) for b in self.batches) / len(self.batches)
        self.max_len = max(workload.seqlens)

    def score(self, policy: Policy) -> Score:
        steps, effs, mem, waves = [], [], 0.0, []
        for batch in self.batches:
            plan = plan_batch(batch, policy, self.world_size, cost=self.cost)
            pred = self.cost.predict(plan, batch)
            steps.append(pred.step_time)
            effs.append(pred.efficiency)
            mem = max(mem, max(pred.peak_memory_bytes))
            waves.append(len(plan.waves))
        step = statistics.fmean(steps)
        comms = sum(1 for _, size in candidate_ranges(policy, self.world_size, self.max_len) if size > 1)
        return Score(step, self.tokens / step, statistics.fmean(effs), mem, statistics.fmean(waves), comms)

    def step_time(self, policy: Policy) -> float:
        return self.score(policy).step_s


def baseline_policies(world_size: int, token_budget: int, scheme: str, max_len: int) -> list[tuple[str, Policy]]:
    """The baselines users run today: static at every feasible degree dividing N, pow2; plus FCP adaptive."""
    from fcp_tune.policy import min_degree_for

    common = dict(world_size=world_size, token_budget=token_budget, scheme=scheme)
    need = min_degree_for(max_len, token_budget)
    # Megatron-LM needs DP = N / CP: static degrees that divide the world size.
    out = [(f"static:{d}", Policy(kind="static", degree=d, **common))
           for d in range(need, world_size + 1) if world_size % d == 0]
    out.append(("pow2", Policy(kind="pow2", **common)))
    out.append(("adaptive", Policy(kind="adaptive", **common)))
    return out


def best_static(scores: Sequence[tuple[str, Score]]) -> tuple[str, Score]:
    """The fastest of the static baselines."""
    statics = [(n, s) for n, s in scores if n.startswith("static:")]
    return min(statics, key=lambda x: x[1].step_s)
