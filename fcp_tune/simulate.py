"""``fcp-tune simulate``: predicted performance of policies at world sizes you choose.

Policies are files or kinds. A kind is rebuilt at each world size (``megatron`` /
``static`` = the smallest feasible degree dividing N, ``megatron:D``, ``static:D``,
``mcore-dynamic``, ``pow2``, ``adaptive``; Megatron's kinds run the ring scheme, Megatron-LM's
default ``p2p``); a thresholds file keeps its boundaries and degrees and is skipped, with the
reason, where a degree exceeds N. Every row: predicted step time, tokens/s, TFLOP/s per GPU
and MFU, efficiency against the ideal bound, speedups over the tuned Megatron-style static
baseline (and its smallest degree), over Megatron-Core dynamic CP and over fcp-tune's best
cost-balanced static degree at that N, communicators, peak memory against the device's
(``fits``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Optional, Sequence

from fcp_tune.costmodel import CostModel
from fcp_tune.errors import FcpTuneError
from fcp_tune.limits import MAX_BATCHES, MAX_TOKENS, MAX_WORLD_SIZE, check_int, check_opt_int, check_seed, check_tokens
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.policy import Policy, min_degree_for
from fcp_tune.policy.kinds import MEGATRON_SCHEME
from fcp_tune.policy.specs import baseline_policies, check_fits, fit_world, resolve_policy
from fcp_tune.profile.schema import Profile
from fcp_tune.schemes import DEFAULT_SCHEME, get_scheme
from fcp_tune.search.evaluate import Evaluator, Scored, reference_scores, speedups_over
from fcp_tune.workload import Workload


@dataclass(frozen=True)
class SimulateConfig:
    """What ``simulate`` is asked, checked once before any work (the CLI only maps options here)."""

    world_sizes: tuple[int, ...]
    token_budget: int
    scheme: str = DEFAULT_SCHEME
    batches: int = 4
    seed: int = 0
    max_communicators: Optional[int] = None
    global_batch_tokens: Optional[int] = None  # None: N x token_budget at each N

    def __post_init__(self) -> None:
        if not self.world_sizes:
            raise FcpTuneError("world_sizes: give at least one world size")
        for n in self.world_sizes:
            check_int("world size (-N)", n, 1, MAX_WORLD_SIZE)
        check_tokens("token_budget", self.token_budget)
        get_scheme(self.scheme)
        check_int("batches", self.batches, 1, MAX_BATCHES)
        check_seed("seed", self.seed)
        check_opt_int("max_communicators", self.max_communicators, 0, MAX_WORLD_SIZE)
        check_opt_int("global_batch_tokens", self.global_batch_tokens, 1, MAX_TOKENS)
        if self.global_batch_tokens is None and max(self.world_sizes) * self.token_budget > MAX_TOKENS:
            raise FcpTuneError(
                f"global batch N x token_budget = {max(self.world_sizes)} x {self.token_budget:,} is above "
                f"{MAX_TOKENS:,} tokens; give global_batch_tokens (--global-batch-tokens)")

    @staticmethod
    def parse_world_sizes(text: str) -> tuple[int, ...]:
        """``"8,64,1024"`` -> ``(8, 64, 1024)``; an error naming the bad item."""
        sizes = []
        for item in text.split(","):
            try:
                sizes.append(int(item.strip()))
            except ValueError:
                raise FcpTuneError(f"world sizes (-N): {item.strip()!r} is not an integer (give e.g. 8,64,1024)") from None
        return tuple(sizes)

    def batch_tokens(self, world_size: int) -> int:
        return self.global_batch_tokens if self.global_batch_tokens is not None else world_size * self.token_budget


def check_specs(specs: Sequence[str], workload: Workload, world_size: int, token_budget: int,
                scheme: str) -> None:
    """Resolve every policy spec once, at ``world_size``: a malformed file, an unknown kind or a
    bad degree is an error here (as in run and search), not a skipped row."""
    if not specs:
        raise FcpTuneError("give at least one policy (file or kind)")
    base = Policy(kind="adaptive", world_size=world_size, token_budget=token_budget, scheme=scheme)
    for spec in specs:
        try:
            policy = resolve_policy(spec, base, workload)
        except ValueError as exc:
            raise FcpTuneError(f"policy {spec}: {exc}") from None
        if policy.kind == "thresholds" and max(policy.degrees) > world_size:
            continue  # a fixed file policy larger than some N: skipped there, with the reason
        check_fits([(spec, fit_world(replace(policy, token_budget=token_budget), world_size))], workload)


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
    over_device: Optional[str] = None  # one line naming the rank, its predicted GiB and the device's

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
    cfg = SimulateConfig(tuple(world_sizes), token_budget, scheme, batches, seed, max_communicators,
                         workload.global_batch_tokens)
    check_specs(specs, workload, max(cfg.world_sizes), token_budget, scheme)
    rows: list[SimRow] = []
    max_len = max(workload.seqlens)
    for n in world_sizes:
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
        small_name = refs["megatron_smallest"][0] if "megatron_smallest" in refs else "-"
        base = Policy(kind="adaptive", world_size=n, token_budget=token_budget, scheme=scheme)
        for spec in specs:
            try:
                policy = fit_world(resolve_policy(spec, base, workload), n)
                if policy.token_budget != token_budget:
                    policy = replace(policy, token_budget=token_budget)
                if policy.kind in ("megatron", "mcore-dynamic") and spec.partition(":")[0] == policy.kind:
                    policy = replace(policy, scheme=MEGATRON_SCHEME)  # what Megatron-LM's users run (p2p)
                if policy.kind == "adaptive":
                    policy = replace(policy, gpus_per_node=node_size(profile, policy.gpus_per_node),
                                     max_communicators=policy.max_communicators if max_communicators is None
                                     else max_communicators)
            except (FcpTuneError, ValueError) as exc:  # specs are checked above: this N cannot run it
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
                over_device=s.over_device(),
            ))
    return rows


def node_size(profile: Profile, default: int) -> int:
    """GPUs per node of the profile's cluster (its extrapolation rule), else ``default``."""
    ex = getattr(profile, "extrapolation", None)
    return int(ex.gpus_per_node) if ex is not None else default
