"""``fcp-tune simulate``: predicted performance of policies at world sizes you choose.

Policies are files or kinds. A kind is rebuilt at each world size (``megatron`` /
``static`` = the smallest feasible degree dividing N, ``megatron:D``, ``static:D``,
``pow2``, ``adaptive``); a thresholds file keeps its boundaries and degrees and is skipped,
with the reason, where a degree exceeds N. Every row: predicted step time and tokens/s,
efficiency against the ideal bound, speedups over the Megatron-style static baseline, over
fcp-tune's best cost-balanced static degree and over pow2 at that N, communicators, peak
memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

from fcp_tune.costmodel import CostModel
from fcp_tune.errors import FcpTuneError
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.policy import Policy, min_degree_for
from fcp_tune.policy.specs import baseline_policies, fit_world, is_kind_spec, resolve_policy
from fcp_tune.profile.schema import Profile
from fcp_tune.schemes import DEFAULT_SCHEME
from fcp_tune.search.evaluate import Evaluator, Scored, reference_scores, speedups_over
from fcp_tune.workload import Workload


@dataclass(frozen=True)
class SimRow:
    world_size: int
    policy: str
    kind: str
    step_s: Optional[float]
    tokens_per_s: Optional[float]
    efficiency: Optional[float]
    speedup_vs_best_static: Optional[float]
    best_static: str
    speedup_vs_megatron: Optional[float]
    megatron: str
    speedup_vs_pow2: Optional[float]
    communicators: Optional[int]
    peak_memory_gib: Optional[float]
    note: str = ""
    comms_per_rank: Optional[int] = None  # the most communicators one rank needs (max_communicators caps it)

    def to_dict(self) -> dict:
        return asdict(self)


def simulate(
    specs: Sequence[str],
    profile: Profile,
    workload: Workload,
    model: ModelConfig,
    world_sizes: Sequence[int],
    token_budget: int,
    scheme: str = DEFAULT_SCHEME,
    batches: int = 4,
    seed: int = 0,
    max_communicators: Optional[int] = None,
) -> list[SimRow]:
    """Score every policy at every world size (the cost model extrapolates past the profile).

    Adaptive policies plan with the profile's node size (``gpus_per_node``) and, if given,
    ``max_communicators`` per rank (0: no cap).
    """
    if not specs:
        raise FcpTuneError("give at least one policy (file or kind)")
    rows: list[SimRow] = []
    max_len = max(workload.seqlens)
    for n in world_sizes:
        if n < 1:
            raise FcpTuneError(f"world sizes must be >= 1, got {n}")
        if min_degree_for(max_len, token_budget) > n:
            raise FcpTuneError(f"{n} ranks x {token_budget} tokens cannot hold the longest sequence ({max_len})")
        cost = CostModel.from_profile(profile, model, scheme=scheme, world_size=n)
        ev = Evaluator(cost, workload, n, batches=batches, seed=seed)
        refs = reference_scores(
            [Scored(name, p, ev.score(p)) for name, p in baseline_policies(n, token_budget, scheme, max_len)
             if p.kind != "adaptive"]
        )
        best_name = refs["best_static"][0]
        mega_name = refs["megatron"][0] if "megatron" in refs else "-"
        base = Policy(kind="adaptive", world_size=n, token_budget=token_budget, scheme=scheme)
        for spec in specs:
            try:
                policy = fit_world(resolve_policy(spec, base, workload), n)
                if policy.token_budget != token_budget:
                    policy = replace(policy, token_budget=token_budget)
                if policy.kind == "adaptive":
                    policy = replace(policy, gpus_per_node=node_size(profile, policy.gpus_per_node),
                                     max_communicators=policy.max_communicators if max_communicators is None
                                     else max_communicators)
            except (FcpTuneError, ValueError) as exc:
                if not Path(spec).is_file() and not is_kind_spec(spec):
                    raise  # neither a policy file nor a kind: bad input, not a skipped row
                rows.append(SimRow(n, spec, "?", None, None, None, None, best_name, None, mega_name, None, None, None,
                                   note=str(exc)))
                continue
            s = ev.score(policy)
            up = speedups_over(s.step_s, refs)
            rows.append(SimRow(
                n, spec, policy.kind, s.step_s, s.tokens_per_s, s.efficiency, up["best_static"],
                best_name, up.get("megatron"), mega_name, up.get("pow2"), s.communicators,
                s.peak_memory_bytes / 2**30, comms_per_rank=s.per_rank_communicators,
            ))
    return rows


def node_size(profile: Profile, default: int) -> int:
    """GPUs per node of the profile's cluster (its extrapolation rule), else ``default``."""
    ex = getattr(profile, "extrapolation", None)
    return int(ex.gpus_per_node) if ex is not None else default
