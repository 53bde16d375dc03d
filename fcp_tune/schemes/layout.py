"""Where every token of a packed batch lives inside a context-parallel group: one vectorised layout.

A sequence of length ``L`` processed by a group of ``d`` ranks is cut into ``2d`` chunks
with boundaries ``b_j = (j * L) // (2d)`` (sizes differ by at most one token). Rank ``i``
of the group holds chunk ``i`` (early) and chunk ``2d-1-i`` (late): the head-tail or
"zigzag" order that gives every rank the same causal attention work for any ``d``, odd
ones included. ``L`` may be smaller than ``2d``: some chunks are then empty and a rank
may hold no token of that sequence.

A rank's local packed tensor holds, for every sequence in order, its early chunk then its
late chunk. Every caller (executor, schemes, cost model, planner, plan checker, policies)
uses this module; it is numpy only (no torch, no process group) and every function takes
many sequences at once.

The planner's memory shortcut lives here too: a rank of a zigzag group holds fewer than
``L/d + 2`` tokens of each sequence, so ``sum(L + 2d) <= d (budget + 1)``
(:func:`rule_sizes`, :func:`rule_capacity`) proves a bin fits without the exact check.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

Lengths = Union[int, Sequence[int], np.ndarray]


def _degree(degree: int) -> int:
    d = int(degree)
    if d < 1:
        raise ValueError(f"degree must be >= 1, got {degree}")
    return d


def chunk_bounds(lengths: Lengths, degree: int) -> np.ndarray:
    """The ``2*degree + 1`` chunk boundaries of each sequence: shape ``lengths.shape + (2d+1,)``."""
    d = _degree(degree)
    L = np.asarray(lengths, dtype=np.int64)
    if np.any(L < 0):
        raise ValueError(f"sequence lengths must be >= 0, got {int(L.min())}")
    j = np.arange(2 * d + 1, dtype=np.int64)
    return (L[..., None] * j) // (2 * d)


@dataclass(frozen=True, eq=False)
class Spans:
    """Per sequence and rank (``shape lengths.shape + (d,)``): ``[e0, e1)`` early, ``[l0, l1)`` late chunk."""

    e0: np.ndarray
    e1: np.ndarray
    l0: np.ndarray
    l1: np.ndarray

    @property
    def early(self) -> np.ndarray:
        """Tokens of the early chunk."""
        return self.e1 - self.e0

    @property
    def tokens(self) -> np.ndarray:
        """Tokens each rank holds of each sequence."""
        return (self.e1 - self.e0) + (self.l1 - self.l0)


def rank_spans(lengths: Lengths, degree: int) -> Spans:
    """The chunks every rank of a ``degree`` group holds of each sequence (sequence positions)."""
    b = chunk_bounds(lengths, degree)
    d = int(degree)
    i = np.arange(d)
    return Spans(b[..., i], b[..., i + 1], b[..., 2 * d - 1 - i], b[..., 2 * d - i])


def tokens_per_rank(lengths: Lengths, degree: int) -> np.ndarray:
    """Tokens of each sequence that each rank holds: shape ``lengths.shape + (d,)``."""
    return rank_spans(lengths, degree).tokens


def rank_loads(lengths: Lengths, degree: int) -> np.ndarray:
    """Tokens each of ``degree`` ranks holds for all these sequences together: shape ``(d,)``."""
    per = tokens_per_rank(np.asarray(lengths, dtype=np.int64).reshape(-1), degree)
    return per.sum(axis=0)


def max_tokens_per_rank(lengths: Lengths, degree: int) -> int:
    """The most tokens any rank of a ``degree`` group holds for these sequences (0 for none)."""
    return int(rank_loads(lengths, degree).max(initial=0))


def fits(lengths: Lengths, degree: int, budget: int) -> bool:
    """Whether no rank of a ``degree`` group holds more than ``budget`` tokens of these sequences."""
    total = int(np.sum(lengths))
    if degree == 1 or total <= budget:
        return total <= budget
    return max_tokens_per_rank(lengths, degree) <= budget


def _int_if_scalar(x):
    """Scalars back to Python ints; arrays unchanged."""
    return x if np.ndim(x) else int(x)


def rule_sizes(lengths, degree):
    """Per-sequence sizes of the sufficient memory rule: ``L + 2d`` (``L`` alone for ``d = 1``).

    Ints or arrays (``degree`` may be an array broadcasting with ``lengths``).
    """
    d = np.asarray(degree)
    return _int_if_scalar(lengths + np.where(d == 1, 0, 2 * d))


def rule_capacity(degree, budget: int):
    """Capacity of a ``degree`` group under the sufficient rule: ``d (budget + 1)`` (``budget`` for ``d = 1``).

    Sequences whose :func:`rule_sizes` sum to at most this surely :func:`fits` (a rank holds
    fewer than ``L/d + 2`` tokens of each sequence); the converse does not hold. Ints or arrays.
    """
    if isinstance(degree, (int, np.integer)):  # the planner's common case: no array round trip
        return budget if degree == 1 else int(degree) * (budget + 1)
    d = np.asarray(degree)
    return _int_if_scalar(np.where(d == 1, budget, d * (budget + 1)))


def surely_fits(total_tokens, num_seqs, degree, budget: int):
    """The sufficient rule for bins of ``num_seqs`` sequences of ``total_tokens`` tokens (ints or arrays)."""
    return total_tokens + rule_sizes(0, degree) * num_seqs <= rule_capacity(degree, budget)


def validate_cu_seqlens(cu_seqlens: Sequence[int], total: int | None = None, name: str = "cu_seqlens") -> None:
    """Check a cumulative-length vector: starts at 0, never decreases, ends at ``total``."""
    if len(cu_seqlens) < 1:
        raise ValueError(f"{name} must have at least one element (0)")
    if cu_seqlens[0] != 0:
        raise ValueError(f"{name} must start at 0, got {cu_seqlens[0]}")
    for i in range(1, len(cu_seqlens)):
        if cu_seqlens[i] < cu_seqlens[i - 1]:
            raise ValueError(
                f"{name} must not decrease: element {i} is {cu_seqlens[i]} < {cu_seqlens[i - 1]}"
            )
    if total is not None and cu_seqlens[-1] != total:
        raise ValueError(f"{name} ends at {cu_seqlens[-1]} but the tensor holds {total} tokens")


def ranges_to_indices(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, e)`` of many ``[s, e)`` ranges (empty ones contribute nothing)."""
    starts = np.asarray(starts, dtype=np.int64).ravel()
    sizes = np.maximum(np.asarray(ends, dtype=np.int64).ravel() - starts, 0)
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.cumsum(sizes) - sizes
    return np.repeat(starts - first, sizes) + np.arange(total, dtype=np.int64)


@dataclass(frozen=True)
class SeqShard:
    """One rank's share of one sequence, in the sequence's own positions (0-based)."""

    early: tuple[int, int]  # [start, end) of the early chunk
    late: tuple[int, int]  # [start, end) of the late chunk

    @property
    def num_tokens(self) -> int:
        return (self.early[1] - self.early[0]) + (self.late[1] - self.late[0])


@dataclass(frozen=True, eq=False)
class ShardLayout:
    """Where each rank's tokens come from, for a whole packed batch and group size.

    ``spans`` holds every sequence's chunks per rank (arrays ``(S, d)``);
    ``offsets[s, r]`` is where sequence ``s`` starts in rank ``r``'s local tensor;
    ``counts[r]`` is rank ``r``'s local token count.
    """

    seqlens: tuple[int, ...]
    degree: int
    spans: Spans
    offsets: np.ndarray
    counts: tuple[int, ...]

    @functools.cached_property
    def cu_seqlens(self) -> tuple[int, ...]:
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum(self.seqlens, dtype=np.int64)]))

    @functools.cached_property
    def shards(self) -> tuple[tuple[SeqShard, ...], ...]:
        """``shards[r][s]``: rank ``r``'s chunks of sequence ``s`` (plain tuples)."""
        sp = self.spans
        e0, e1, l0, l1 = (a.T.tolist() for a in (sp.e0, sp.e1, sp.l0, sp.l1))
        return tuple(
            tuple(SeqShard((a, b), (c, e)) for a, b, c, e in zip(e0[r], e1[r], l0[r], l1[r]))
            for r in range(self.degree)
        )

    def global_indices(self, rank: int) -> np.ndarray:
        """Global packed-token indices of rank ``rank``'s local tokens, in local order."""
        if not 0 <= rank < self.degree:
            raise ValueError(f"rank must be in [0, {self.degree}), got {rank}")
        base = np.asarray(self.cu_seqlens[:-1], dtype=np.int64)
        sp = self.spans
        starts = np.stack([base + sp.e0[:, rank], base + sp.l0[:, rank]], axis=1)
        ends = np.stack([base + sp.e1[:, rank], base + sp.l1[:, rank]], axis=1)
        return ranges_to_indices(starts, ends)


def shard_layout(cu_seqlens: Sequence[int], degree: int) -> ShardLayout:
    """Compute the :class:`ShardLayout` of a packed batch for a group of ``degree`` ranks."""
    validate_cu_seqlens(cu_seqlens)
    if int(degree) < 1:
        raise ValueError(f"group size must be >= 1, got {degree}")
    cu = np.asarray(cu_seqlens, dtype=np.int64)
    seqlens = np.diff(cu)
    spans = rank_spans(seqlens, degree)
    tok = spans.tokens.reshape(len(seqlens), int(degree))
    offsets = np.cumsum(tok, axis=0) - tok
    counts = tuple(int(x) for x in tok.sum(axis=0))
    return ShardLayout(tuple(int(x) for x in seqlens), int(degree), spans, offsets, counts)
