"""Predicted step time of a policy over a fixed, seeded set of global batches.

The same evaluator scores search trials, baselines and ``fcp-tune simulate``: plan each
batch with the planner under the cost model, predict the step with the same cost model,
and average. A kind that pads sequences (``megatron``: to ``2 * cp``) is planned and costed
on the padded lengths; its efficiency is still measured against the bound of the real
batch. Deterministic: the batches come from the workload's seeded sampler.

The baselines (:func:`baseline_policies`) are the three comparisons every report shows:
``megatron:D`` (Megatron-LM static CP at the smallest degree dividing N that fits),
``static:D`` at every such degree (fcp-tune's cost-balanced static planner; the best is
"best static"), ``pow2`` (Megatron-Core dynamic CP), plus ``adaptive``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from fcp_tune.baselines import dividing_degree
from fcp_tune.costmodel import CostModel
from fcp_tune.planner import candidate_ranges, plan_batch
from fcp_tune.planner.vocab import per_rank_count
from fcp_tune.policy import Policy, min_degree_for
from fcp_tune.policy_kinds import kind_of
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
        rule = kind_of(policy.kind)
        for batch in self.batches:
            lengths = rule.padded(policy, batch).tolist()
            plan = plan_batch(lengths, policy, self.world_size, cost=self.cost)
            pred = self.cost.predict(plan, lengths, policy.token_budget)
            ideal = self.cost.ideal_time(batch, self.world_size, policy.token_budget)
            steps.append(pred.step_time)
            effs.append(ideal / pred.step_time if pred.step_time > 0 else 1.0)
            mem = max(mem, max(pred.peak_memory_bytes))
            waves.append(len(plan.waves))
        step = statistics.fmean(steps)
        ranges = [r for r in candidate_ranges(policy, self.world_size, self.max_len) if r[1] > 1]
        return Score(step, self.tokens / step, statistics.fmean(effs), mem, statistics.fmean(waves), len(ranges),
                     per_rank_count(ranges, self.world_size))

    def step_time(self, policy: Policy) -> float:
        return self.score(policy).step_s


def baseline_policies(world_size: int, token_budget: int, scheme: str, max_len: int) -> list[tuple[str, Policy]]:
    """The baselines: megatron at its degree, static at every feasible degree dividing N, pow2; plus adaptive.

    The megatron degree is the smallest dividing N whose ``2 * cp`` padding of the longest
    sequence still fits ``cp * token_budget`` tokens (none: no megatron row).
    """
    common = dict(world_size=world_size, token_budget=token_budget, scheme=scheme)
    need = min_degree_for(max_len, token_budget)
    # Megatron-LM needs DP = N / CP: static degrees that divide the world size.
    degrees = [d for d in range(need, world_size + 1) if world_size % d == 0]
    out: list[tuple[str, Policy]] = []
    mega = dividing_degree(world_size, token_budget, max_len, padded=True)
    if mega is not None:
        out.append((f"megatron:{mega}", Policy(kind="megatron", degree=mega, **common)))
    out += [(f"static:{d}", Policy(kind="static", degree=d, **common)) for d in degrees]
    out.append(("pow2", Policy(kind="pow2", **common)))
    out.append(("adaptive", Policy(kind="adaptive", **common)))
    return out


def best_static(scores: Sequence[tuple[str, Score]]) -> tuple[str, Score]:
    """The fastest of the static baselines."""
    statics = [(n, s) for n, s in scores if n.startswith("static:")]
    return min(statics, key=lambda x: x[1].step_s)


def reference_scores(scores: Sequence[tuple[str, Score]]) -> dict[str, tuple[str, Score]]:
    """The baselines of :data:`COMPARISONS` among ``scores``: key -> (name, score); missing ones left out."""
    out: dict[str, tuple[str, Score]] = {}
    mega = [(n, s) for n, s in scores if n.startswith("megatron")]
    if mega:
        out["megatron"] = mega[0]
    if any(n.startswith("static:") for n, _ in scores):
        out["best_static"] = best_static(scores)
    pow2 = [(n, s) for n, s in scores if n == "pow2"]
    if pow2:
        out["pow2"] = pow2[0]
    return out


def speedups_over(step_s: float, refs: dict[str, tuple[str, Score]]) -> dict[str, float]:
    """``reference step / step_s`` for every reference baseline (> 1: faster than it)."""
    return {key: s.step_s / step_s for key, (_, s) in refs.items()}
