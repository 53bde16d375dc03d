"""Predicted step time of a policy over a fixed, seeded set of global batches.

The same evaluator scores search trials, baselines and ``fcp-tune simulate``: plan each
batch with the planner under the cost model, predict the step with the same cost model,
and average. A kind that pads sequences (``megatron``: to ``2 * cp``) is planned and costed
on the padded lengths; its efficiency is still measured against the bound of the real
batch. Deterministic: the batches come from the workload's seeded sampler.

The baselines (:func:`fcp_tune.policy.specs.baseline_policies`) are what every report compares
with, each run as its users run it: ``megatron:D`` at every degree dividing N that fits, up to
:data:`~fcp_tune.policy.kinds.MEGATRON_SWEEP_MAX` (Megatron-LM static CP; users sweep
``--context-parallel-size``, so the fastest is "megatron tuned", the smallest is shown beside
it), ``static:D`` at every such degree (fcp-tune's cost-balanced static planner; the best is
"best static") and ``mcore-dynamic`` (Megatron-Core dynamic CP), plus ``adaptive``.
Megatron's baselines run Megatron-LM's default ``--cp-comm-type p2p``: the ``ring`` scheme,
communication overlapped with compute (:data:`~fcp_tune.policy.kinds.MEGATRON_SCHEME`); each
policy is costed with its own scheme, the ideal bound with the evaluator's.

Every score carries the batch's model FLOPs (:func:`fcp_tune.mfu.model_flops`), TFLOP/s
per GPU and MFU, and whether its predicted peak fits the device's memory (the profile's
``hardware``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from fcp_tune import mfu
from fcp_tune.costmodel import CostModel
from fcp_tune.memory import over_device
from fcp_tune.planner import candidate_ranges, plan_batch
from fcp_tune.planner.vocab import per_rank_count
from fcp_tune.policy import Policy
from fcp_tune.workload import BatchSampler, Workload

# Keys of the speedups every comparison reports, and what each compares with.
COMPARISONS = {
    "megatron": "Megatron-LM static CP tuned: its fastest --context-parallel-size dividing N (ring/p2p)",
    "megatron_smallest": "Megatron-LM static CP at the smallest degree that fits (ring/p2p)",
    "mcore_dynamic": "Megatron-Core dynamic CP (hybrid CP, BalancedCPScheduler; ring/p2p)",
    "best_static": "fcp-tune's best cost-balanced static degree",
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
    model_flops: float = 0.0  # mean model FLOPs per step (PaLM convention, attention per sequence)
    tflops_per_gpu: float = 0.0  # model TFLOP/s per GPU
    mfu: float | None = None  # model FLOPs utilisation (None: the device's peak is unknown)
    device_memory_bytes: float | None = None  # what one device holds (None: the profile does not say)
    peak_rank: int = 0  # the rank where the peak occurs

    def over_device(self) -> str | None:
        """One line naming the rank, its predicted peak and the device's memory, when it does not fit."""
        if self.fits:
            return None
        return over_device([0.0] * self.peak_rank + [self.peak_memory_bytes], self.device_memory_bytes)

    @property
    def fits(self) -> bool:
        """Whether the predicted peak fits the device (True when its memory is unknown)."""
        return self.device_memory_bytes is None or self.peak_memory_bytes <= self.device_memory_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "fits": self.fits}


class Evaluator:
    """Scores policies on ``batches`` seeded global batches of ``workload`` at ``world_size`` ranks."""

    def __init__(self, cost: CostModel, workload: Workload, world_size: int, batches: int = 8, seed: int = 0) -> None:
        if batches < 1:
            raise ValueError(f"batches must be >= 1, got {batches}")
        self.cost = cost
        self.world_size = world_size
        self.batches: list[list[int]] = BatchSampler(workload, seed=seed).batches(batches)
        self.tokens = sum(sum(b) for b in self.batches) / len(self.batches)
        self.flops = sum(mfu.model_flops(cost.model, b) for b in self.batches) / len(self.batches)
        self.max_len = max(workload.seqlens)
        self._costs = {cost.scheme: cost}

    def cost_for(self, scheme: str) -> CostModel:
        """The cost model for ``scheme`` (the evaluator's own, or one built alike, once)."""
        if scheme not in self._costs:
            c = self.cost
            self._costs[scheme] = CostModel.from_profile(c.profile, c.model, scheme=scheme, world_size=c.world_size)
        return self._costs[scheme]

    def score(self, policy: Policy) -> Score:
        steps, effs, mem, waves, peak_rank = [], [], 0.0, [], 0
        cost = self.cost_for(policy.scheme)
        for batch in self.batches:
            lengths = policy.padded(batch).tolist()
            plan = plan_batch(lengths, policy, cost=cost)
            pred = cost.predict(plan, lengths, policy.token_budget)
            # the bound of the real batch, under the evaluator's scheme for every policy
            ideal = self.cost.ideal_time(batch, self.world_size, policy.token_budget)
            steps.append(pred.step_time)
            effs.append(ideal / pred.step_time if pred.step_time > 0 else 1.0)
            if max(pred.peak_memory_bytes) > mem:
                mem = max(pred.peak_memory_bytes)
                peak_rank = pred.peak_memory_bytes.index(mem)
            waves.append(len(plan.waves))
        step = statistics.fmean(steps)
        ranges = [r for r in candidate_ranges(policy, max_seqlen=self.max_len) if r[1] > 1]
        hw = self.cost.profile.hardware
        tflops, util = mfu.utilisation(self.cost.model, self.flops, step, self.world_size, hw)
        return Score(step, self.tokens / step, statistics.fmean(effs), mem, statistics.fmean(waves), len(ranges),
                     per_rank_count(ranges, self.world_size), self.flops, tflops, util,
                     mfu.device_memory_bytes(hw), peak_rank)

    def step_time(self, policy: Policy) -> float:
        return self.score(policy).step_s


@dataclass(frozen=True)
class Scored:
    """A named policy and its score (a baseline row; the kind is read from the policy, not the name)."""

    name: str
    policy: Policy
    score: Score


def _fastest(scores: Sequence[Scored]) -> Scored:
    """The fastest of ``scores`` that fits the device (of all of them if none fits)."""
    fitting = [s for s in scores if s.score.fits] or list(scores)
    return min(fitting, key=lambda s: s.score.step_s)


def best_static(scores: Sequence[Scored]) -> Scored:
    """The fastest of the ``static`` baselines (that fit the device)."""
    return _fastest([s for s in scores if s.policy.kind == "static"])


def reference_scores(scores: Sequence[Scored]) -> dict[str, tuple[str, Score]]:
    """The baselines of :data:`COMPARISONS` among ``scores``: key -> (name, score); missing ones left out.

    ``megatron`` is the fastest Megatron degree that fits the device (the tuned one),
    ``megatron_smallest`` the smallest degree.
    """
    out: dict[str, tuple[str, Score]] = {}
    mega = [s for s in scores if s.policy.kind == "megatron"]
    if mega:
        tuned, small = _fastest(mega), min(mega, key=lambda s: s.policy.degree or 0)
        out["megatron"], out["megatron_smallest"] = (tuned.name, tuned.score), (small.name, small.score)
    dyn = [s for s in scores if s.policy.kind == "mcore-dynamic"]
    if dyn:
        out["mcore_dynamic"] = (dyn[0].name, dyn[0].score)
    if any(s.policy.kind == "static" for s in scores):
        best = best_static(scores)
        out["best_static"] = (best.name, best.score)
    return {key: out[key] for key in COMPARISONS if key in out}


def speedups_over(step_s: float, refs: dict[str, tuple[str, Score]]) -> dict[str, float]:
    """``reference step / step_s`` for every reference baseline (> 1: faster than it)."""
    return {key: s.step_s / step_s for key, (_, s) in refs.items()}
