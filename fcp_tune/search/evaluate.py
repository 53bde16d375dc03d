"""Predicted step time of a policy over a fixed, seeded set of global batches.

The same evaluator scores search trials, baselines and ``fcp-tune simulate``: plan each
batch with the planner under the cost model, predict the step with the same cost model,
and average. A kind that pads sequences (``megatron``: to ``2 * cp``) is planned and costed
on the padded lengths; its efficiency is still measured against the bound of the real
batch. Deterministic: the batches come from the workload's seeded sampler.

The baselines (:func:`fcp_tune.policy.specs.baseline_policies`) give the three comparisons every report shows:
``megatron:D`` (Megatron-LM static CP at the smallest degree dividing N that fits),
``static:D`` at every such degree (fcp-tune's cost-balanced static planner; the best is
"best static"), ``pow2`` (Megatron-Core dynamic CP), plus ``adaptive``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from fcp_tune.costmodel import CostModel
from fcp_tune.planner import candidate_ranges, plan_batch
from fcp_tune.planner.vocab import per_rank_count
from fcp_tune.policy import Policy
from fcp_tune.workload import BatchSampler, Workload

# Keys of the speedups every comparison reports, and what each compares with.
COMPARISONS = {
    "megatron": "Megatron-LM static CP (token packing, smallest degree)",
    "best_static": "fcp-tune's best cost-balanced static degree",
    "pow2": "Megatron-Core dynamic CP (powers of two)",
}


@dataclass(frozen=True)
class Score:
    """A policy's predicted performance over the evaluation batches."""

    step_s: float  # mean predicted step time
    tokens_per_s: float
    efficiency: float  # mean of ideal / predicted (the ideal bound of the real, unpadded batch)
    peak_memory_bytes: float  # largest over batches and ranks
    waves: float  # mean waves per step
    communicators: int  # process groups of size > 1 the policy may need
    per_rank_communicators: int = 0  # the most of them one rank belongs to (max_communicators caps it)

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
            lengths = policy.padded(batch).tolist()
            plan = plan_batch(lengths, policy, cost=self.cost)
            pred = self.cost.predict(plan, lengths, policy.token_budget)
            ideal = self.cost.ideal_time(batch, self.world_size, policy.token_budget)
            steps.append(pred.step_time)
            effs.append(ideal / pred.step_time if pred.step_time > 0 else 1.0)
            mem = max(mem, max(pred.peak_memory_bytes))
            waves.append(len(plan.waves))
        step = statistics.fmean(steps)
        ranges = [r for r in candidate_ranges(policy, max_seqlen=self.max_len) if r[1] > 1]
        return Score(step, self.tokens / step, statistics.fmean(effs), mem, statistics.fmean(waves), len(ranges),
                     per_rank_count(ranges, self.world_size))

    def step_time(self, policy: Policy) -> float:
        return self.score(policy).step_s


@dataclass(frozen=True)
class Scored:
    """A named policy and its score (a baseline row; the kind is read from the policy, not the name)."""

    name: str
    policy: Policy
    score: Score


def best_static(scores: Sequence[Scored]) -> Scored:
    """The fastest of the ``static`` baselines."""
    return min((s for s in scores if s.policy.kind == "static"), key=lambda s: s.score.step_s)


def reference_scores(scores: Sequence[Scored]) -> dict[str, tuple[str, Score]]:
    """The baselines of :data:`COMPARISONS` among ``scores``: key -> (name, score); missing ones left out."""
    out: dict[str, tuple[str, Score]] = {}
    for s in scores:
        if s.policy.kind in ("megatron", "pow2") and s.policy.kind not in out:
            out[s.policy.kind] = (s.name, s.score)
    if any(s.policy.kind == "static" for s in scores):
        best = best_static(scores)
        out["best_static"] = (best.name, best.score)
    return {key: out[key] for key in COMPARISONS if key in out}


def speedups_over(step_s: float, refs: dict[str, tuple[str, Score]]) -> dict[str, float]:
    """``reference step / step_s`` for every reference baseline (> 1: faster than it)."""
    return {key: s.step_s / step_s for key, (_, s) in refs.items()}
