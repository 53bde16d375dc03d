"""Which (query rows, key rows) blocks each scheme computes: pure functions of the layout.

Every block is either *full* or a *causal square* (see ``kernels``), so no kernel ever
needs a bottom-right-aligned mask. Query rows are in the rank's local packed tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

from fcp_tune.layout import ShardLayout

Range = tuple[int, int]


@dataclass(frozen=True)
class Pass:
    """One kernel call's worth of segments: disjoint query ranges, one key range each."""

    q_ranges: tuple[Range, ...]
    k_ranges: tuple[Range, ...]
    causal: bool


def _nonempty(q: Range, k: Range) -> bool:
    return q[1] > q[0] and k[1] > k[0]


def allgather_passes(layout: ShardLayout, rank: int, causal: bool) -> tuple[Pass, ...]:
    """Blocks for a rank that holds the whole gathered K/V in global packed order.

    Causal: each local query chunk ``[a, b)`` of a sequence attends its prefix ``[0, a)``
    fully and ``[a, b)`` as a causal square; an early and late chunk that touch (group size
    1, or the middle rank) are treated as one chunk. Non-causal: all local rows of a
    sequence attend the whole sequence.
    """
    cu = layout.cu_seqlens
    prefix_q, prefix_k, diag_q, diag_k, full_q, full_k = [], [], [], [], [], []
    for s, sh in enumerate(layout.shards[rank]):
        base, off = cu[s], layout.local_offsets[rank][s]
        n_early = sh.early[1] - sh.early[0]
        if not causal:
            q = (off, off + sh.num_tokens)
            k = (base, base + layout.seqlens[s])
            if _nonempty(q, k):
                full_q.append(q)
                full_k.append(k)
            continue
        if sh.early[1] == sh.late[0]:
            chunks = [((sh.early[0], sh.late[1]), off)]
        else:
            chunks = [(sh.early, off), (sh.late, off + n_early)]
        for (a, b), row in chunks:
            if b <= a:
                continue
            if a > 0:
                prefix_q.append((row, row + b - a))
                prefix_k.append((base, base + a))
            diag_q.append((row, row + b - a))
            diag_k.append((base + a, base + b))
    passes = []
    for q, k, c in ((full_q, full_k, False), (prefix_q, prefix_k, False), (diag_q, diag_k, True)):
        if q:
            passes.append(Pass(tuple(q), tuple(k), c))
    return tuple(passes)


def ring_pass(layout: ShardLayout, rank: int, source: int, causal: bool) -> Pass | None:
    """Blocks for a rank holding ``source``'s K/V (key rows in ``source``'s local tensor).

    Zigzag ring: rank ``i`` holds chunks ``i`` and ``2d-1-i``. From itself it computes a
    causal square over its own (ordered) rows; from ``j < i`` all its rows see ``j``'s early
    chunk; from ``j > i`` only its late chunk sees both of ``j``'s chunks. Non-causal: all to all.
    """
    qs, ks = [], []
    for s, (mine, theirs) in enumerate(zip(layout.shards[rank], layout.shards[source])):
        q_off, k_off = layout.local_offsets[rank][s], layout.local_offsets[source][s]
        n_q, n_k = mine.num_tokens, theirs.num_tokens
        q_early = mine.early[1] - mine.early[0]
        k_early = theirs.early[1] - theirs.early[0]
        if not causal or source == rank:
            q, k = (q_off, q_off + n_q), (k_off, k_off + n_k)
        elif source < rank:
            q, k = (q_off, q_off + n_q), (k_off, k_off + k_early)
        else:
            q, k = (q_off + q_early, q_off + n_q), (k_off, k_off + n_k)
        if _nonempty(q, k):
            qs.append(q)
            ks.append(k)
    if not qs:
        return None
    return Pass(tuple(qs), tuple(ks), causal and source == rank)
