"""The attention blocks of one sequence, for every rank of a group at once, as numpy arrays.

These are vectorised restatements of :func:`fcp_tune.attention.blocks.allgather_passes`
and :func:`~fcp_tune.attention.blocks.ring_pass` for a single causal sequence (the
executor's blocks for a packed batch are the union of its sequences' blocks), built on
:func:`fcp_tune.layout.chunk_bounds`. The cost model calls them once per (length, degree)
and the tests check them block for block against the executor's own functions. Each
block is ``(q_len, k_len, causal)``; a zero ``q_len`` or ``k_len`` means "no block".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fcp_tune.layout import chunk_bounds


@dataclass(frozen=True)
class Blocks:
    """Block shapes with a leading index shape (ranks, or steps x ranks) and a block axis last."""

    q: np.ndarray
    k: np.ndarray
    causal: np.ndarray


def _chunks(seqlen: int, degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Early ``[e0, e1)`` and late ``[l0, l1)`` chunk bounds of every rank."""
    b = np.asarray(chunk_bounds(seqlen, degree), dtype=np.int64)
    i = np.arange(degree)
    return b[i], b[i + 1], b[2 * degree - 1 - i], b[2 * degree - i]


def tokens(seqlen: int, degree: int) -> np.ndarray:
    """Tokens of the sequence on each rank."""
    e0, e1, l0, l1 = _chunks(seqlen, degree)
    return (e1 - e0) + (l1 - l0)


def allgather_blocks(seqlen: int, degree: int) -> Blocks:
    """Per rank (axis 0), its four possible blocks: prefix and causal square of each chunk.

    Touching early and late chunks (the middle rank, or empty chunks in between) count as
    one chunk, as in the executor.
    """
    e0, e1, l0, l1 = _chunks(seqlen, degree)
    merged = e1 == l0
    a1 = e0
    b1 = np.where(merged, l1, e1)
    a2 = np.where(merged, 0, l0)
    b2 = np.where(merged, 0, l1)
    n1, n2 = b1 - a1, b2 - a2
    q = np.stack([n1, n1, n2, n2], axis=1)
    k = np.stack([a1, n1, a2, n2], axis=1)
    causal = np.broadcast_to(np.array([False, True, False, True]), q.shape)
    return Blocks(q, k, causal)


def ring_blocks(seqlen: int, degree: int) -> Blocks:
    """Step ``t`` (axis 0), rank ``i`` (axis 1): the one block rank ``i`` computes on the K/V
    of rank ``(i - t) mod d``; a trailing block axis of length 1."""
    e0, e1, l0, l1 = _chunks(seqlen, degree)
    n = (e1 - e0) + (l1 - l0)
    early, late = e1 - e0, l1 - l0
    d = degree
    i = np.arange(d)[None, :]
    t = np.arange(d)[:, None]
    j = (i - t) % d
    own = t == 0
    before = j < i
    q = np.where(own | before, n[i], late[i])
    k = np.where(own, n[i], np.where(before, early[j], n[j]))
    causal = np.broadcast_to(own, q.shape)
    return Blocks(q[..., None], k[..., None], causal[..., None])
