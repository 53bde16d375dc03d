"""Single-process float64 reference for a training step: loss and gradients of the whole batch.

Independent of the planner, the sharding and ``cp_attention``: every sequence is run
whole, positions are ``arange(L)`` per sequence, attention is the dense reference, and the
loss is the mean cross-entropy over every predicted token of the batch.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from fcp_tune.attention.reference import reference_attention
from fcp_tune.executor.data import batch_tokens
from fcp_tune.executor.model import Decoder
from fcp_tune.integration.shards import cumulative


def reference_step(model: Decoder, seqlens: Sequence[int], step: int, seed: int) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and per-parameter gradients of one global batch on one process."""
    vocab = model.cfg.vocab_size
    toks = batch_tokens(seqlens, vocab, seed, step)
    ids = torch.cat(toks)
    positions = torch.cat([torch.arange(int(n)) for n in seqlens])
    targets = torch.cat([torch.cat([t[1:], torch.tensor([-100])]) for t in toks])
    cu = cumulative(seqlens)
    model.zero_grad(set_to_none=True)
    logits = model(ids, positions, lambda q, k, v: reference_attention(q, k, v, cu, causal=True).to(q.dtype))
    loss = F.cross_entropy(logits.double(), targets, ignore_index=-100, reduction="mean")
    loss.backward()
    return float(loss.detach()), {n: p.grad.detach().clone() for n, p in model.named_parameters()}
