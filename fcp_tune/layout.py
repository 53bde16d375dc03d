"""Where every token of a packed batch lives inside a context-parallel group: pure functions.

A sequence of length ``L`` processed by a group of ``d`` ranks is cut into ``2d`` chunks
with boundaries ``b_j = (j * L) // (2d)`` (sizes differ by at most one token). Rank ``i``
of the group holds chunk ``i`` (early) and chunk ``2d-1-i`` (late): the head-tail or
"zigzag" order that gives every rank the same causal attention work for any ``d``, odd
ones included. ``L`` may be smaller than ``2d``: some chunks are then empty and a rank
may hold no token of that sequence.

A rank's local packed tensor holds, for every sequence in order, its early chunk then its
late chunk. Nothing here needs torch or a process group, so the planner, the cost model
and the tests can use it freely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


def chunk_bounds(seqlen: int, degree: int) -> tuple[int, ...]:
    """The ``2*degree + 1`` chunk boundaries of a sequence of ``seqlen`` tokens."""
    if degree < 1:
        raise ValueError(f"degree must be >= 1, got {degree}")
    if seqlen < 0:
        raise ValueError(f"seqlen must be >= 0, got {seqlen}")
    n = 2 * degree
    return tuple((j * seqlen) // n for j in range(n + 1))


def rank_chunks(degree: int, rank: int) -> tuple[int, int]:
    """The (early, late) chunk indices that ``rank`` of a ``degree``-rank group holds."""
    if not 0 <= rank < degree:
        raise ValueError(f"rank must be in [0, {degree}), got {rank}")
    return rank, 2 * degree - 1 - rank


@dataclass(frozen=True)
class SeqShard:
    """One rank's share of one sequence, in the sequence's own positions (0-based)."""

    early: tuple[int, int]  # [start, end) of the early chunk
    late: tuple[int, int]  # [start, end) of the late chunk

    @property
    def num_tokens(self) -> int:
        return (self.early[1] - self.early[0]) + (self.late[1] - self.late[0])


def seq_shard(seqlen: int, degree: int, rank: int) -> SeqShard:
    """Which positions of a ``seqlen``-token sequence ``rank`` holds in a ``degree`` group."""
    b = chunk_bounds(seqlen, degree)
    e, l = rank_chunks(degree, rank)
    return SeqShard(early=(b[e], b[e + 1]), late=(b[l], b[l + 1]))


def tokens_per_rank(seqlen: int, degree: int) -> tuple[int, ...]:
    """Tokens of one sequence that each rank of the group holds."""
    b = chunk_bounds(seqlen, degree)
    n = 2 * degree
    return tuple((b[i + 1] - b[i]) + (b[n - i] - b[n - 1 - i]) for i in range(degree))


def max_tokens_per_rank(seqlens: Sequence[int], degree: int) -> int:
    """The most tokens any rank of a ``degree`` group holds for this list of sequences."""
    totals = [0] * degree
    for length in seqlens:
        for r, t in enumerate(tokens_per_rank(length, degree)):
            totals[r] += t
    return max(totals) if totals else 0


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


@dataclass(frozen=True)
class ShardLayout:
    """Where each rank's tokens come from, for a whole packed batch and group size.

    ``local_offsets[r][s]`` is where sequence ``s`` starts in rank ``r``'s local tensor;
    ``shards[r][s]`` gives its chunks in sequence positions; ``counts[r]`` is rank
    ``r``'s local token count.
    """

    seqlens: tuple[int, ...]
    degree: int
    shards: tuple[tuple[SeqShard, ...], ...]
    local_offsets: tuple[tuple[int, ...], ...]
    counts: tuple[int, ...]

    @property
    def cu_seqlens(self) -> tuple[int, ...]:
        out = [0]
        for length in self.seqlens:
            out.append(out[-1] + length)
        return tuple(out)

    def global_indices(self, rank: int) -> list[int]:
        """Global packed-token indices of rank ``rank``'s local tokens, in local order."""
        cu = self.cu_seqlens
        idx: list[int] = []
        for s, sh in enumerate(self.shards[rank]):
            base = cu[s]
            idx.extend(range(base + sh.early[0], base + sh.early[1]))
            idx.extend(range(base + sh.late[0], base + sh.late[1]))
        return idx


def shard_layout(cu_seqlens: Sequence[int], degree: int) -> ShardLayout:
    """Compute the :class:`ShardLayout` of a packed batch for a group of ``degree`` ranks."""
    validate_cu_seqlens(cu_seqlens)
    if degree < 1:
        raise ValueError(f"group size must be >= 1, got {degree}")
    seqlens = tuple(int(cu_seqlens[i + 1]) - int(cu_seqlens[i]) for i in range(len(cu_seqlens) - 1))
    shards = []
    offsets = []
    counts = []
    for r in range(degree):
        row = tuple(seq_shard(length, degree, r) for length in seqlens)
        off = []
        pos = 0
        for sh in row:
            off.append(pos)
            pos += sh.num_tokens
        shards.append(row)
        offsets.append(tuple(off))
        counts.append(pos)
    return ShardLayout(seqlens, degree, tuple(shards), tuple(offsets), tuple(counts))
