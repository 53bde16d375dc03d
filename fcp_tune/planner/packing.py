"""Shared building blocks of the planners: exact per-rank loads, degrees, bin packing, placement.

- :func:`~fcp_tune.schemes.layout.rank_loads` / :func:`~fcp_tune.schemes.layout.fits`
  (re-exported): tokens each rank of a group holds under the exact zigzag chunking of
  :mod:`fcp_tune.schemes.layout`, the one layout every caller uses.
- :func:`pack_class`: best-fit-decreasing packing of sequences that share one degree into
  bins whose every rank stays within the token budget.
- :func:`place_fixed`: first-fit placement of fixed-degree bins onto aligned contiguous
  rank ranges, wave after wave.
"""

from __future__ import annotations

import bisect
from typing import Sequence

import numpy as np

from fcp_tune.schemes.layout import fits, rank_loads, rule_capacity, rule_sizes  # noqa: F401 (re-exported)

_KEY = 1 << 24  # bin-index field of the packing sort keys (more bins than this is absurd)


def pack_class(
    ids: Sequence[int], lengths: np.ndarray, degree: int, budget: int, max_probe: int = 16
) -> list[list[int]]:
    """Best-fit-decreasing: pack sequences ``ids`` into bins of ``degree`` ranks.

    Sequences go longest first (ties: lower id first) into the open bin with the least
    spare token capacity that still holds them exactly (every rank <= ``budget``); a new
    bin opens when none does. With ``degree > 1`` at most ``max_probe`` bins are probed per
    sequence (rounding can make a bin with enough total room fail the per-rank check).
    Deterministic; each sequence must fit a bin of its own.
    """
    idx = np.asarray(ids, dtype=np.int64)
    order = idx[np.lexsort((idx, -lengths[idx]))].tolist() if len(idx) else []
    bins: list[list[int]] = []
    keys: list[int] = []  # sorted (spare tokens) * _KEY + bin index
    if degree == 1:
        find, insert, pop = bisect.bisect_left, bisect.insort, keys.pop
        for s, length in zip(order, lengths[order].tolist() if order else []):
            need = length * _KEY
            pos = find(keys, need)
            if pos < len(keys):
                key = pop(pos)
                bins[key % _KEY].append(s)
                insert(keys, key - need, 0, pos)
            else:
                insert(keys, budget * _KEY - need + len(bins))
                bins.append([s])
        return bins
    # Per-rank loads are exact but costly; a bin passes at once when the sufficient rule
    # sum(L + 2 d) <= d (budget + 1) holds (schemes.layout.rule_sizes / rule_capacity).
    # A bin's exact loads are computed the first time the rule fails for it and then kept up
    # to date, so each probe costs O(degree), not O(bin size x degree).
    cap = degree * budget
    rule = rule_capacity(degree, budget)
    padded: list[int] = []  # per bin: sum of rule sizes
    loads: list[np.ndarray | None] = []  # per bin: exact per-rank tokens, once needed
    for s in order:
        length = int(lengths[s])
        size = rule_sizes(length, degree)
        pos = bisect.bisect_left(keys, length * _KEY)
        placed = False
        mine: np.ndarray | None = None  # this sequence's tokens per rank, once needed
        for probe in range(pos, min(pos + max_probe, len(keys))):
            key = keys[probe]
            b = key % _KEY
            ok = padded[b] + size <= rule
            if not ok:
                if loads[b] is None:
                    loads[b] = rank_loads(lengths[bins[b]], degree)
                mine = rank_loads(lengths[[s]], degree) if mine is None else mine
                ok = int((loads[b] + mine).max()) <= budget
            if ok:
                keys.pop(probe)
                bins[b].append(s)
                padded[b] += size
                if loads[b] is not None:
                    mine = rank_loads(lengths[[s]], degree) if mine is None else mine
                    loads[b] = loads[b] + mine
                bisect.insort(keys, key - length * _KEY)
                placed = True
                break
        if not placed:
            if size > rule and not fits([length], degree, budget):
                raise ValueError(
                    f"sequence {s} (length {length}) does not fit {degree} ranks of {budget} tokens"
                )
            b = len(bins)
            bins.append([s])
            padded.append(size)
            loads.append(None)
            bisect.insort(keys, (cap - length) * _KEY + b)
    return bins


def place_fixed(
    bins: Sequence[tuple[int, list[int]]], world_size: int
) -> list[list[tuple[int, int, list[int]]]]:
    """Place ``(degree, seq_ids)`` bins, in the given order, onto waves of ``world_size`` ranks.

    A bin of degree ``d`` may only start at a multiple of ``d`` (so a policy with degrees
    ``D`` needs at most ``sum(N // d for d in D)`` communicators). Each bin takes the
    lowest free aligned slot of the earliest wave that has one; a new wave opens when none
    does. Callers pass bins most expensive first, so costly bins share the early waves and
    cheap ones fill the gaps left in them. Returns per wave ``(start, size, seq_ids)``.
    """
    occupied: list[bytearray] = []
    waves: list[list[tuple[int, int, list[int]]]] = []
    next_start: list[dict[int, int]] = []  # per wave: degree -> lowest aligned start maybe free
    first_wave: dict[int, int] = {}  # degree -> earliest wave maybe holding a free slot
    for d, ids in bins:
        w = first_wave.get(d, 0)
        while True:
            if w == len(waves):
                occupied.append(bytearray(world_size))
                waves.append([])
                next_start.append({})
            occ = occupied[w]
            p = next_start[w].get(d, 0)
            while p + d <= world_size:
                hit = occ.find(1, p, p + d)
                if hit < 0:
                    break
                p = (hit // d + 1) * d
            next_start[w][d] = p
            if p + d <= world_size:
                occ[p : p + d] = b"\x01" * d
                next_start[w][d] = p + d
                waves[w].append((p, d, ids))
                first_wave[d] = w
                break
            w += 1
    return waves
