"""Plan agreement: one all-reduce proves every rank runs the same plan (or fails together)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from fcp_tune.integration.planahead import Planned
from fcp_tune.planner import Plan


def agree_on_plan(planned: Planned, device: torch.device) -> Plan:
    """One all-reduce proves every rank holds the same plan; a planning failure anywhere
    raises on every rank (naming the failing rank) instead of leaving peers waiting."""
    rank = dist.get_rank()
    digest = planned.plan.digest() if planned.plan is not None else 0
    failed = rank + 1 if planned.error is not None else 0
    t = torch.tensor([digest, -digest, failed], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if int(t[2]):
        if planned.error is not None:
            raise RuntimeError(
                f"planning failed on rank {rank}: {type(planned.error).__name__}: {planned.error}"
            ) from planned.error
        raise RuntimeError(f"planning failed on rank {int(t[2]) - 1} (this is rank {rank})")
    if int(t[0]) != digest or int(t[1]) != -digest:
        raise RuntimeError(f"ranks derived different plans (digest {digest} on rank {rank})")
    assert planned.plan is not None
    return planned.plan
