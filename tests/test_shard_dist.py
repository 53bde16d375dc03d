"""shard/unshard across real process groups (gloo, forked), including their gradients."""

from __future__ import annotations

import torch
import torch.distributed as dist

from fcp_tune.attention import shard, unshard
from fcp_tune.launch import RankFailure, run_local


def _roundtrip(rank, world):
    out = []
    for seqlens in ([1], [2, 7], [13, 1, 6, 30]):
        cu = [0]
        for n in seqlens:
            cu.append(cu[-1] + n)
        x = torch.arange(cu[-1] * 2, dtype=torch.float64).reshape(cu[-1], 2).requires_grad_()
        local = shard(x, cu)
        back = unshard(local, cu)
        ok = torch.equal(back.detach(), x.detach())
        # Each rank's copy contributes to the loss: the gradient of a token is world_size.
        back.sum().backward()
        out.append((ok, float(x.grad[shard(torch.arange(cu[-1]), cu)].min()) if local.numel() else float(world)))
    return out


def test_shard_unshard_roundtrip_3_ranks():
    results = run_local(_roundtrip, 3, timeout=60)
    for per_rank in results:
        for ok, grad in per_rank:
            assert ok
            assert grad == 3.0


def _raise_on_rank_1(rank, world):
    if rank == 1:
        raise RuntimeError("boom")
    dist.barrier()
    return rank


def test_failure_names_rank():
    try:
        run_local(_raise_on_rank_1, 3, timeout=60)
    except RankFailure as exc:
        assert exc.rank == 1 and "boom" in str(exc)
    else:
        raise AssertionError("expected RankFailure")
