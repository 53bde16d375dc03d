"""Synthetic token data of the bundled executor: pure functions.

Every sequence's tokens follow a seeded arithmetic pattern ``(a + b*t) mod vocab`` (so the
model has something to learn) derived from ``(seed, step, sequence id)`` alone: every rank
builds the same global batch without communication. Each rank's share of it comes from the
public integration API (:mod:`fcp_tune.integration`).
"""

from __future__ import annotations

from typing import Sequence

import torch


def sequence_tokens(length: int, vocab: int, seed: int, step: int, seq_id: int) -> torch.Tensor:
    """The token ids of one sequence (deterministic)."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_000_033 + seq_id)
    a, b = torch.randint(0, vocab, (2,), generator=gen).tolist()
    return (a + (b | 1) * torch.arange(length)) % vocab


def batch_tokens(seqlens: Sequence[int], vocab: int, seed: int, step: int) -> list[torch.Tensor]:
    """The token ids of every sequence of step ``step``'s global batch."""
    return [sequence_tokens(int(n), vocab, seed, step, i) for i, n in enumerate(seqlens)]
