"""The defaults ``search``, ``simulate``, ``report`` and ``run`` share: one profile, workload,
token budget and long-document rule, so the same inputs give the same numbers everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fcp_tune.limits import MAX_TOKENS
from fcp_tune.modelcfg import ModelConfig, load_model_config
from fcp_tune.policy import load_policy
from fcp_tune.policy.specs import default_policy_path, document_cap
from fcp_tune.profile.schema import Profile
from fcp_tune.workload import Workload, default_workload_path, load_workload

PROFILE_HELP = ("Profile YAML or bundled name (measured or reference). [default: the newest profile measured on "
                "this host for the model, else the bundled cpu-epyc-2proc-tiny]")
WORKLOAD_HELP = "Workload file or built-in (see `fcp-tune workload show`). [default: the bundled workload]"
BUDGET_HELP = ("Most tokens one rank holds in one wave (memory), or auto: the largest whose predicted memory fits "
               "the device. [default: the bundled policy's, 1024]")
BATCH_HELP = ("Global batch. [default on a GPU profile: a pre-training batch at that scale, max(4M x max(1, N/256), "
              "2 x N x budget) tokens; on a CPU profile: {cpu}]")
ONE_WAVE_HELP = "Global batch N x token budget (one micro-batch per replica) instead of the default."


@dataclass(frozen=True)
class PlanningInputs:
    """A resolved profile, model, world size and token budget."""

    profile_path: Path
    profile: Profile
    model: ModelConfig
    world_size: int
    token_budget: int

    def workload(self, spec: Optional[str], global_batch_tokens: Optional[int] = None, seed: int = 0,
                 max_len: Optional[int] = None, world_size: Optional[int] = None) -> Workload:
        """``spec`` (default: the bundled workload), documents longer than ``world_size x token_budget``
        split (:func:`~fcp_tune.policy.specs.document_cap`) unless ``max_len`` is given."""
        world = self.world_size if world_size is None else world_size
        cap = max_len if max_len is not None else min(document_cap(max(world, 1), max(self.token_budget, 1)),
                                                      MAX_TOKENS)
        return load_workload(spec or str(default_workload_path()), global_batch_tokens=global_batch_tokens,
                             seed=seed, max_len=cap)


def planning_inputs(profile: Optional[str], model: Optional[str], world_size: Optional[int],
                    token_budget: Optional[int | str]) -> PlanningInputs:
    """Resolve the shared defaults: the profile ``validate`` would pick, its world size and
    model, and the bundled policy's token budget (``auto``: the largest that fits the device at
    that world size, :func:`fcp_tune.scale.resolve_token_budget`)."""
    from fcp_tune.profile.lookup import find_profile
    from fcp_tune.scale import resolve_token_budget

    path, prof = find_profile(profile, model or "tiny", world_size or 1)
    cfg_model = load_model_config(model) if model else prof.model
    world = prof.world_size if world_size is None else world_size
    budget = resolve_token_budget(token_budget, cfg_model, world, prof.hardware,
                                  load_policy(default_policy_path()).token_budget)
    return PlanningInputs(path, prof, cfg_model, world, budget)
