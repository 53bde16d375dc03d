"""The global per-token loss and the gradient synchronisation of an FCP step.

Every wave's loss is ``sum of token cross-entropies * loss_scale`` with ``loss_scale = 1 /
(predicted tokens in the whole global batch)``, so the parts of all waves, groups and ranks
add up to the exact per-token mean of the global batch, however the plan spread its
sequences. Gradients then *sum* over the ranks (each rank's gradient is already its share of
the mean's gradient): :func:`sync_gradients` all-reduces them with ``SUM``, DDP style, in one
collective. Wrappers that *average* (``DistributedDataParallel``, FSDP2's default) divide by
the world size: use ``fully_shard(...).set_gradient_divide_factor(1.0)`` or scale the loss by
the world size.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from fcp_tune.attention.comm import WORLD, group_info
from fcp_tune.integration.shards import IGNORE_INDEX


def wave_loss(logits: torch.Tensor, wave: Any) -> torch.Tensor:
    """This wave's part of the global per-token mean cross-entropy.

    ``logits`` ``(T_local, V)`` (a leading batch dim of 1 is dropped) for ``wave``'s tokens;
    computed in float32 (float64 stays float64). A wave with no token gives a zero that still
    carries the graph, so ``backward`` runs on every rank alike.
    """
    if logits.dim() == 3 and logits.shape[0] == 1:
        logits = logits[0]
    x = logits if logits.dtype == torch.float64 else logits.float()
    ce = F.cross_entropy(x, wave.labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return ce * wave.loss_scale


def reduce_loss(loss_part: float, group: Any = WORLD, device: Any = None) -> float:
    """Sum of every rank's loss parts: the global per-token mean."""
    info = group_info(group)
    t = torch.tensor([float(loss_part)], dtype=torch.float64, device=device)
    if info.size > 1:
        dist.all_reduce(t, group=info.group)
    return float(t[0])


def sync_gradients(params: Iterable[torch.nn.Parameter], loss_part: float = 0.0, group: Any = WORLD) -> float:
    """Sum gradients (and the loss parts) over the world in one all-reduce; return the global loss.

    Parameters without a gradient (a rank that ran no token) count as zero and get one, so
    every rank's optimizer steps the same.
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        return reduce_loss(loss_part, group)
    info = group_info(group)
    first = params[0]
    flat = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
    buf = torch.cat(flat + [torch.tensor([loss_part], dtype=first.dtype, device=first.device)])
    if info.size > 1:
        dist.all_reduce(buf, group=info.group)
    offset = 0
    for p in params:
        n = p.numel()
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        p.grad.copy_(buf[offset : offset + n].view_as(p))
        offset += n
    return float(buf[-1])
