"""Settings that depend on the scale of the run: the global batch and the per-rank token budget.

``simulate``, ``search`` and ``report`` default to a global batch a pre-training run uses at
that scale (REFERENCE: Llama 2 used 4M tokens per step, Llama 3 405B 4M growing to 16M):
:func:`realistic_global_batch_tokens`. ``--token-budget auto`` asks :func:`resolve_token_budget`
for the largest per-rank budget whose predicted memory fits the profile's device.
"""

from __future__ import annotations

from typing import Any, Mapping

from fcp_tune.errors import FcpTuneError
from fcp_tune.limits import check_tokens
from fcp_tune.memory import max_token_budget
from fcp_tune.mfu import device_memory_bytes
from fcp_tune.modelcfg import ModelConfig

BASE_BATCH_TOKENS = 4 * 2**20  # 4M tokens per step (Llama 2; Llama 3 405B's first stage)
BASE_WORLD = 256  # ... up to 256 ranks, then proportional (16M at 1,024: Llama 3 405B's last stage)
MIN_MICRO_BATCHES = 2  # and never fewer than two micro-batches of the budget per replica


def realistic_global_batch_tokens(world_size: int, token_budget: int) -> int:
    """``max(4M x max(1, N / 256), 2 x N x token_budget)`` tokens (module docstring)."""
    if world_size < 1 or token_budget < 1:
        raise FcpTuneError(f"world size and token budget must be >= 1, got {world_size} and {token_budget}")
    scaled = BASE_BATCH_TOKENS * max(1.0, world_size / BASE_WORLD)
    return int(max(scaled, MIN_MICRO_BATCHES * world_size * token_budget))


def resolve_token_budget(spec: str | int | None, model: ModelConfig, world_size: int,
                         hardware: Mapping[str, Any], default: int) -> int:
    """``spec`` as a per-rank token budget: an integer, ``auto`` (the largest that fits the
    device, :func:`fcp_tune.memory.max_token_budget`), or ``default`` when None."""
    if spec is None:
        return default
    if isinstance(spec, int):
        value = spec
    elif str(spec).strip().lower() == "auto":
        device = device_memory_bytes(hardware)
        if device is None:
            raise FcpTuneError("--token-budget auto needs the device's memory: the profile's hardware has no "
                               "gpu_memory_bytes (give a number)")
        try:
            return max_token_budget(model, world_size, device)
        except ValueError as exc:
            raise FcpTuneError(f"--token-budget auto at N={world_size}: {exc}") from None
    else:
        try:
            value = int(str(spec))
        except ValueError:
            raise FcpTuneError(f"token_budget (--token-budget) must be a positive integer or auto, got {spec!r}") from None
    return check_tokens("token_budget (--token-budget)", value)


def default_global_batch_tokens(world_size: int, token_budget: int, hardware: Mapping[str, Any],
                                one_wave: bool = False) -> int | None:
    """The commands' default global batch: ``N x budget`` with ``one_wave``; on a GPU cluster
    profile (its device memory known) :func:`realistic_global_batch_tokens`; else ``None``
    (the workload's own batch: a CPU profile is a small local demo, not a pre-training run)."""
    if one_wave:
        return world_size * token_budget
    if device_memory_bytes(hardware) is None:
        return None
    return realistic_global_batch_tokens(world_size, token_budget)
