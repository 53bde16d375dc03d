"""Synthetic token data and each rank's share of a group's sequences: pure functions.

Every sequence's tokens follow a seeded arithmetic pattern ``(a + b*t) mod vocab`` (so the
model has something to learn) derived from ``(seed, step, sequence id)`` alone: every rank
builds the same global batch without communication.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from fcp_tune.schemes.layout import shard_layout


def sequence_tokens(length: int, vocab: int, seed: int, step: int, seq_id: int) -> torch.Tensor:
    """The token ids of one sequence (deterministic)."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_000_033 + seq_id)
    a, b = torch.randint(0, vocab, (2,), generator=gen).tolist()
    return (a + (b | 1) * torch.arange(length)) % vocab


def cumulative(lengths: Sequence[int]) -> tuple[int, ...]:
    """``cu_seqlens`` of a list of lengths."""
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + int(n))
    return tuple(cu)


@dataclass(frozen=True)
class LocalBatch:
    """One rank's tokens of a group's packed batch.

    ``targets`` is the next token of the same sequence, ``-100`` (ignored) at a sequence's
    last position; ``positions`` are positions inside each token's own sequence (for RoPE).
    """

    ids: torch.Tensor
    positions: torch.Tensor
    targets: torch.Tensor
    cu_seqlens: tuple[int, ...]


def local_batch(
    seqlens: Sequence[int], seq_ids: Sequence[int], degree: int, rank: int, vocab: int, seed: int, step: int
) -> LocalBatch:
    """The share of rank ``rank`` of a ``degree``-rank group processing sequences ``seq_ids``."""
    lengths = [int(seqlens[i]) for i in seq_ids]
    cu = cumulative(lengths)
    layout = shard_layout(cu, degree)
    ids, pos, tgt = [], [], []
    for s, (sid, sh) in enumerate(zip(seq_ids, layout.shards[rank])):
        toks = sequence_tokens(lengths[s], vocab, seed, step, sid)
        nxt = torch.cat([toks[1:], torch.tensor([-100])])
        for a, b in (sh.early, sh.late):
            if b > a:
                ids.append(toks[a:b])
                pos.append(torch.arange(a, b))
                tgt.append(nxt[a:b])
    if not ids:
        empty = torch.empty(0, dtype=torch.long)
        return LocalBatch(empty, empty, empty, cu)
    return LocalBatch(torch.cat(ids), torch.cat(pos), torch.cat(tgt), cu)


def target_count(seqlens: Sequence[int]) -> int:
    """Predicted tokens in a batch: every position but each sequence's last."""
    return sum(max(int(n) - 1, 0) for n in seqlens)
