"""``fcp-tune simulate``: predicted performance of policies at world sizes you choose.

Policies are files or kinds. A kind is rebuilt at each world size (``static`` = the
smallest feasible degree dividing N, ``static:D``, ``pow2``, ``adaptive``); a thresholds
file keeps its boundaries and degrees and is skipped, with the reason, where a degree
exceeds N. Every row: predicted step time and tokens/s, efficiency against the ideal
bound, speedup over the best static baseline at that N, communicators, peak memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

from fcp_tune.costmodel import CostModel
from fcp_tune.errors import FcpTuneError
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.policy import Policy, load_policy, min_degree_for
from fcp_tune.profile.schema import Profile
from fcp_tune.search.evaluate import Evaluator
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
    communicators: Optional[int]
    peak_memory_gib: Optional[float]
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _at_world(spec: str, n: int, budget: int, scheme: str, max_len: int) -> Policy:
    name, _, arg = spec.partition(":")
    common = dict(world_size=n, token_budget=budget, scheme=scheme)
    if name == "static" and not Path(spec).is_file():
        if arg:
            return Policy(kind="static", degree=int(arg), **common)
        need = min_degree_for(max_len, budget)
        for d in range(need, n + 1):
            if n % d == 0:
                return Policy(kind="static", degree=d, **common)
        raise FcpTuneError(f"no static degree dividing {n} holds {max_len} tokens in {budget}-token ranks")
    if name in ("pow2", "adaptive") and not Path(spec).is_file():
        return Policy(kind=name, **common)
    policy = load_policy(spec)
    return policy.with_world_size(n)


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
) -> list[SimRow]:
    """Score every policy at every world size (the cost model extrapolates past the profile)."""
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
        best_name, best_static = "", None
        for d in range(min_degree_for(max_len, token_budget), n + 1):
            if n % d == 0:
                s = ev.score(Policy(kind="static", degree=d, world_size=n, token_budget=token_budget, scheme=scheme))
                if best_static is None or s.step_s < best_static.step_s:
                    best_name, best_static = f"static:{d}", s
        assert best_static is not None
        for spec in specs:
            try:
                policy = _at_world(spec, n, token_budget, scheme, max_len)
                if policy.token_budget != token_budget:
                    policy = Policy(**{**policy.__dict__, "token_budget": token_budget})
            except (FcpTuneError, ValueError) as exc:
                if Path(spec).is_file() or spec.partition(":")[0] not in ("static", "pow2", "adaptive"):
                    if not Path(spec).is_file():
                        raise
                rows.append(SimRow(n, spec, "?", None, None, None, None, best_name, None, None, note=str(exc)))
                continue
            s = ev.score(policy)
            rows.append(SimRow(
                n, spec, policy.kind, s.step_s, s.tokens_per_s, s.efficiency, best_static.step_s / s.step_s,
                best_name, s.communicators, s.peak_memory_bytes / 2**30,
            ))
    return rows
