"""Test-only fault injection into the executor, by monkeypatching (nothing in the library).

The patches are applied in the parent before ``run_training`` forks its ranks, so every
rank inherits them; each rank keeps its own counters. ``patch`` is ``monkeypatch.setattr``
in tests (undone afterwards) or plain ``setattr`` in a throw-away subprocess.
"""

from __future__ import annotations

import os
import signal
from typing import Callable

import torch.distributed as dist

import fcp_tune.executor.step as step_mod
import fcp_tune.integration.planahead as planahead_mod


def planner_fault(rank: int, step: int, patch: Callable = setattr) -> None:
    """Planning the ``step``-th batch raises on ``rank`` (one policy: the n-th plan is step n)."""
    real = planahead_mod.plan_batch
    calls = [0]

    def plan_batch(*args, **kwargs):
        n, calls[0] = calls[0], calls[0] + 1
        if dist.get_rank() == rank and n == step:
            raise RuntimeError(f"injected planner fault on rank {rank} at step {step}")
        return real(*args, **kwargs)

    patch(planahead_mod, "plan_batch", plan_batch)


def wave_fault(rank: int, step: int, kind: str = "raise", patch: Callable = setattr) -> None:
    """``rank`` fails at ``step`` right after its first forward: raises, or (``kill``) SIGKILLs itself."""
    real_prepare, real_loss = step_mod.prepare, step_mod.wave_loss
    current = [None]

    def prepare(state, seqlens, step_, *args, **kwargs):
        current[0] = step_
        return real_prepare(state, seqlens, step_, *args, **kwargs)

    def wave_loss(logits, wave):
        loss = real_loss(logits, wave)
        if dist.get_rank() == rank and current[0] == step:
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"injected fault on rank {rank} at step {step}")
        return loss

    patch(step_mod, "prepare", prepare)
    patch(step_mod, "wave_loss", wave_loss)
