"""``fcp-tune simulate``: predicted performance of policies at world sizes you choose.

Policies are files or kinds. A kind is rebuilt at each world size (``megatron`` /
``static`` = the smallest feasible degree dividing N, ``megatron:D``, ``static:D``,
``mcore-dynamic``, ``pow2``, ``adaptive``; Megatron's kinds run the ring scheme, Megatron-LM's
default ``p2p``); a thresholds file keeps its boundaries and
degrees and is skipped, with the reason, where a degree exceeds N. Every row: predicted step
time, tokens/s, TFLOP/s per GPU and MFU, efficiency against the ideal bound, speedups over
the tuned Megatron-style static baseline (and its smallest degree), over Megatron-Core
dynamic CP and over fcp-tune's best cost-balanced static degree at that N, communicators,
peak memory against the device's (``fits``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

from fcp_tune.baselines import BUILT_KINDS, fit_world, resolve_policy
from fcp_tune.costmodel import CostModel
from fcp_tune.errors import FcpTuneError
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.policy import Policy, min_degree_for
from fcp_tune.profile.schema import Profile
from fcp_tune.search.evaluate import (
    MEGATRON_SCHEME, Evaluator, baseline_policies, reference_scores, speedups_over,
)
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
    speedup_vs_megatron: Optional[float]  # over the tuned Megatron degree
    megatron: str
    speedup_vs_mcore_dynamic: Optional[float]
    communicators: Optional[int]
    peak_memory_gib: Optional[float]
    note: str = ""
    comms_per_rank: Optional[int] = None  # the most communicators one rank needs (max_communicators caps it)
    speedup_vs_megatron_smallest: Optional[float] = None
    megatron_smallest: str = "-"
    tflops_per_gpu: Optional[float] = None
    mfu: Optional[float] = None
    device_memory_gib: Optional[float] = None
    fits: Optional[bool] = None  # predicted peak <= the device's memory
    global_batch_tokens: Optional[int] = None
    token_budget: Optional[int] = None

    def to_dict(self) -> dict:
        return asdict(self)


def simulate(
    specs: Sequence[str],
    profile: Profile,
    workload: Workload,
    model: ModelConfig,
    world_sizes: Sequence[int],
    token_budget: int,
    scheme: str = "allgather",
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
            [(name, ev.score(p)) for name, p in baseline_policies(n, token_budget, scheme, max_len)
             if p.kind != "adaptive"]
        )
        best_name = refs["best_static"][0]
        mega_name = refs["megatron"][0] if "megatron" in refs else "-"
        small_name = refs["megatron_smallest"][0] if "megatron_smallest" in refs else "-"
        base = Policy(kind="adaptive", world_size=n, token_budget=token_budget, scheme=scheme)
        for spec in specs:
            try:
                policy = fit_world(resolve_policy(spec, base, workload), n)
                if policy.token_budget != token_budget:
                    policy = replace(policy, token_budget=token_budget)
                if policy.kind in ("megatron", "mcore-dynamic") and not Path(spec).is_file():
                    policy = replace(policy, scheme=MEGATRON_SCHEME)  # what Megatron-LM's users run (p2p)
                if policy.kind == "adaptive":
                    policy = replace(policy, gpus_per_node=node_size(profile, policy.gpus_per_node),
                                     max_communicators=policy.max_communicators if max_communicators is None
                                     else max_communicators)
            except (FcpTuneError, ValueError) as exc:
                if not Path(spec).is_file() and spec.partition(":")[0] not in BUILT_KINDS:
                    raise  # neither a policy file nor a kind: bad input, not a skipped row
                rows.append(SimRow(n, spec, "?", None, None, None, None, best_name, None, mega_name, None, None, None,
                                   note=str(exc), megatron_smallest=small_name))
                continue
            s = ev.score(policy)
            up = speedups_over(s.step_s, refs)
            dev = None if s.device_memory_bytes is None else s.device_memory_bytes / 2**30
            rows.append(SimRow(
                n, spec, policy.kind, s.step_s, s.tokens_per_s, s.efficiency, up["best_static"],
                best_name, up.get("megatron"), mega_name, up.get("mcore_dynamic"), s.communicators,
                s.peak_memory_bytes / 2**30, comms_per_rank=s.per_rank_communicators,
                speedup_vs_megatron_smallest=up.get("megatron_smallest"), megatron_smallest=small_name,
                tflops_per_gpu=s.tflops_per_gpu, mfu=s.mfu, device_memory_gib=dev, fits=s.fits,
                global_batch_tokens=workload.global_batch_tokens, token_budget=token_budget,
            ))
    return rows


def node_size(profile: Profile, default: int) -> int:
    """GPUs per node of the profile's cluster (its extrapolation rule), else ``default``."""
    ex = getattr(profile, "extrapolation", None)
    return int(ex.gpus_per_node) if ex is not None else default
