"""The group vocabulary: the bounded set of rank ranges adaptive plans may use.

Every communicating group costs a communicator on each of its ranks (NCCL: hundreds of MB
of GPU memory each, and a collective to create), so the adaptive planner does not use any
of the ``N (N + 1) / 2`` contiguous ranges but only a fixed *vocabulary* that is

- **node-aligned**: a group of ``s <= gpus_per_node`` ranks lies inside one node (fast
  intra-node links; the cost model assumes exactly this); a larger group is made of whole
  quarter nodes, sizes about a quarter octave apart (see :func:`_families`), and the whole
  world is always a member;
- **aligned**: size ``s`` starts at multiples of ``s`` from its node's (or, for whole-node
  groups, the world's) left edge, or - a second *family* - ends at multiples of ``s`` from
  the right edge, so ``5 + 3`` or ``4 + 3 + 1`` still tile a node of 8. Any size, not only
  powers of two: 3, 5, 6, 7 inside a node, and across nodes 10, 12, 14, 20, 24, 28, 40, ...
  (nodes of 8) up to where the cap leaves room;
- **capped per rank**: ``max_communicators`` bounds how many vocabulary groups (size >= 2)
  any one rank belongs to, which is what a communicator costs (its memory is per member
  rank). Families are admitted greedily in a fixed priority order (the world; left-aligned
  sizes inside a node; whole-node powers of two; other multi-node sizes, smallest first;
  right-aligned sizes) and a family that would push any rank over the cap is left out.
  Powers of two come early, so every degree can be rounded up to a member within a factor
  of two.

``max_communicators = 0`` means no cap and no lattice: every contiguous range (the planner
of the paper, for comparison; impractical beyond a few dozen ranks). Everything here is
pure and deterministic, so every rank derives the same vocabulary.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fcp_tune.planner.cost import CostFn, allowed_sizes, limit_sizes
from fcp_tune.planner.packing import fits
from fcp_tune.schemes.layout import surely_fits
from fcp_tune.policy import DEFAULT_GPUS_PER_NODE, DEFAULT_MAX_COMMUNICATORS


@dataclass(frozen=True)
class Vocabulary:
    """The rank ranges ``(start, size)`` (size >= 2) one world may use; size 1 is always allowed.

    ``ranges`` are sorted by ``(size, start)``, the canonical creation order. ``per_rank``
    is the most ranges any one rank belongs to (at most ``max_communicators`` when capped).
    ``capped`` is ``False`` for the unbounded vocabulary (every contiguous range; then
    ``ranges`` is empty and :meth:`contains` is always true).
    """

    world_size: int
    gpus_per_node: int
    max_communicators: int
    capped: bool
    ranges: tuple[tuple[int, int], ...]
    per_rank: int

    @functools.cached_property
    def sizes(self) -> tuple[int, ...]:
        """Every allowed group size, ascending, 1 included."""
        if not self.capped:
            return tuple(range(1, self.world_size + 1))
        return tuple(sorted({1} | {s for _, s in self.ranges}))

    @property
    def count(self) -> int:
        """Communicating groups (size >= 2) in the vocabulary."""
        n = self.world_size
        return len(self.ranges) if self.capped else n * (n + 1) // 2 - n

    def contains(self, start: int, size: int) -> bool:
        """Whether ``[start, start + size)`` is a vocabulary group (any single rank is)."""
        if start < 0 or size < 1 or start + size > self.world_size:
            return False
        return size == 1 or not self.capped or (start, size) in self._set

    def starts(self, size: int) -> tuple[int, ...]:
        """Start ranks of the vocabulary groups of ``size``, in placement order (left family first)."""
        return self._starts.get(size, ())

    def round_up(self, degrees: np.ndarray | Sequence[int]) -> np.ndarray:
        """Each degree raised to the smallest allowed size >= it (the largest size at most)."""
        return _round_up(self.sizes, degrees)

    @functools.cached_property
    def _set(self) -> frozenset[tuple[int, int]]:
        return frozenset(self.ranges)

    @functools.cached_property
    def _starts(self) -> dict[int, tuple[int, ...]]:
        """Per size: the left family's starts ascending, then the right family's."""
        g = self.gpus_per_node
        by_size: dict[int, list[int]] = {}
        for start, size in self.ranges:
            by_size.setdefault(size, []).append(start)

        def right_family(start: int, size: int) -> bool:
            origin = (start // g) * g if size <= g else 0
            return (start - origin) % size != 0

        return {s: tuple(sorted(v, key=lambda a: (right_family(a, s), a))) for s, v in by_size.items()}


def _round_up(sizes: Sequence[int], degrees: np.ndarray | Sequence[int]) -> np.ndarray:
    """Each degree raised to the smallest of ``sizes`` (ascending) >= it, the largest at most."""
    arr = np.asarray(sizes, dtype=np.int64)
    d = np.asarray(degrees, dtype=np.int64)
    return arr[np.minimum(np.searchsorted(arr, d), arr.size - 1)]


def _node_domains(n: int, g: int) -> list[tuple[int, int]]:
    """``[a, b)`` of each node; the last one may be partial."""
    return [(a, min(n, a + g)) for a in range(0, n, g)]


def _families(n: int, g: int) -> list[list[tuple[int, int]]]:
    """Candidate families of ranges (size >= 2), in admission priority order.

    Inside a node: every size, left- then right-aligned. Across nodes: sizes about a quarter
    of an octave apart (:func:`_across_sizes`: 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, ... for
    nodes of 8, so rounding a degree to a member changes it by at most ~12 %), each starting
    at multiples of itself inside the whole nodes (every GPU has its own network rail in the
    clusters the reference profile describes, so a group's inter-node bandwidth per rank does
    not depend on how many of a node's GPUs it uses).
    """
    nodes = _node_domains(n, g)
    span = (n // g) * g  # ranks in whole nodes
    intra = range(2, min(g, n) + 1)

    def in_nodes(s: int, right: bool) -> list[tuple[int, int]]:
        if right:
            return [(b - (j + 1) * s, s) for a, b in nodes for j in range((b - a) // s)]
        return [(a + j * s, s) for a, b in nodes for j in range((b - a) // s)]

    def across(s: int, right: bool) -> list[tuple[int, int]]:
        if right:
            return [(span - (j + 1) * s, s) for j in range(span // s)]
        return [(j * s, s) for j in range(span // s)]

    pow2 = [k * g for k in (1 << i for i in range(1, 20)) if k * g <= span]
    others = [s for s in _across_sizes(g, span) if s not in pow2]
    fams: list[list[tuple[int, int]]] = [[(0, n)]] if n >= 2 else []
    fams += [in_nodes(s, False) for s in intra]
    fams += [across(s, False) for s in pow2]  # every degree within 2x of a member
    fams += [across(s, False) for s in others]
    fams += [in_nodes(s, True) for s in intra]
    fams += [across(s, True) for s in pow2 + others]
    return fams


def _across_sizes(g: int, span: int) -> list[int]:
    """Group sizes above a node, up to ``span``: multiples of ``max(g / 4, 2^(floor(log2 s) - 2))``."""
    out, s = [], g + max(1, g // 4)
    while s <= span:
        out.append(s)
        s += max(max(1, g // 4), 1 << max(0, s.bit_length() - 3))
    return out


@functools.lru_cache(maxsize=64)
def build_vocabulary(
    world_size: int,
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE,
    max_communicators: int = DEFAULT_MAX_COMMUNICATORS,
    sizes: tuple[int, ...] | None = None,
) -> Vocabulary:
    """The vocabulary of a ``world_size`` world (see the module docstring).

    ``sizes``: when given, only groups of these sizes are admitted (the degrees the
    attention scheme can run, e.g. Ulysses' divisors of the K/V head count); the world is
    then a member only if its size is one of them. With no cap this is every contiguous
    range of an allowed size.

    Raises ``ValueError`` naming the field for a world size or node size < 1 or a negative
    cap. Deterministic and cheap (O(families x N)); cached because every batch asks.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if gpus_per_node < 1:
        raise ValueError(f"gpus_per_node must be >= 1, got {gpus_per_node}")
    if max_communicators < 0:
        raise ValueError(f"max_communicators must be >= 0 (0: no cap), got {max_communicators}")
    n, g = world_size, gpus_per_node
    if sizes is not None and set(range(1, n + 1)) <= set(sizes):
        sizes = None  # nothing to filter
    if max_communicators == 0:
        if sizes is None:
            return Vocabulary(n, g, 0, False, (), _uncapped_per_rank(n))
        every = [(a, s) for s in sorted(set(sizes)) if 2 <= s <= n for a in range(n - s + 1)]
        return Vocabulary(n, g, 0, True, tuple(every), per_rank_count(every, n))
    member = np.zeros(n, dtype=np.int64)  # ranges each rank belongs to so far
    chosen: set[tuple[int, int]] = set()
    for fam in _families(n, g):
        if sizes is not None and fam[0][1] not in sizes:
            continue  # a family is one size
        new = sorted(r for r in dict.fromkeys(fam) if r not in chosen)
        if not new:
            continue
        # A family's ranges are disjoint (one size, one alignment): each adds 1 to its ranks.
        edges = np.array([[a, a + s] for a, s in new], dtype=np.int64).ravel()
        if fam[0] != (0, n):  # the world is always a member
            tops = np.maximum.reduceat(member, np.minimum(edges, n - 1))[::2] if edges[-1] < n else \
                np.maximum.reduceat(member, edges[:-1])[::2]
            if int(tops.max()) + 1 > max_communicators:
                continue
        delta = np.zeros(n + 1, dtype=np.int64)
        np.add.at(delta, edges[0::2], 1)
        np.add.at(delta, edges[1::2], -1)
        member += np.cumsum(delta[:n])
        chosen.update(new)
        if int(member.min()) >= max_communicators:
            break  # every rank is full: nothing more can be admitted
    per_rank = int(member.max()) if chosen else 0
    ranges = tuple(sorted(chosen, key=lambda r: (r[1], r[0])))
    return Vocabulary(n, g, max_communicators, True, ranges, per_rank)


def _uncapped_per_rank(n: int) -> int:
    """Most contiguous ranges of size >= 2 containing one rank: ``(i + 1)(n - i) - 1`` at the middle."""
    if n < 2:
        return 0
    i = (n - 1) // 2
    return (i + 1) * (n - i) - 1


def per_rank_count(ranges: Sequence[tuple[int, int]], world_size: int) -> int:
    """The most of ``ranges`` (size >= 2 counted) any one rank belongs to."""
    delta = np.zeros(world_size + 1, dtype=np.int64)
    for start, size in ranges:
        if size >= 2:
            delta[start] += 1
            delta[start + size] -= 1
    return int(np.cumsum(delta[:world_size]).max()) if world_size else 0


# ---------------------------------------------------------------------- planning with it
def restrict(cost: CostFn, vocab: Vocabulary) -> CostFn:
    """``cost`` limited to ``vocab``'s sizes (:class:`~fcp_tune.planner.cost.LimitedCost`); unchanged when uncapped."""
    return limit_sizes(cost, vocab.sizes) if vocab.capped else cost


def round_degree(cost: CostFn, degree: int) -> int:
    """``degree`` raised to the next size ``cost`` allows when it is limited, else as is."""
    sizes = allowed_sizes(cost)
    if sizes is None:
        return int(degree)
    return int(_round_up(sizes, [degree])[0])


def allowed_sizes_mask(cost: CostFn, degrees: np.ndarray) -> np.ndarray | None:
    """Where ``degrees`` are sizes ``cost`` allows when it is limited; ``None`` otherwise."""
    sizes = allowed_sizes(cost)
    return None if sizes is None else np.isin(np.asarray(degrees, dtype=np.int64), sizes)


Groups = list[tuple[int, list[int]]]


def min_sizes(lengths: np.ndarray, mins: np.ndarray, vocab: Vocabulary, budget: int) -> np.ndarray:
    """Per sequence, the smallest allowed size >= its minimum degree that holds it in ``budget``.

    Usually just :meth:`Vocabulary.round_up`; with odd budgets a larger group can hold more
    tokens on one rank than a smaller one, so sizes failing the sufficient rule
    (:func:`fcp_tune.schemes.layout.surely_fits`) are checked exactly. Raises ``ValueError`` naming the length
    when no vocabulary size holds a sequence.
    """
    out = vocab.round_up(mins)
    sizes = vocab.sizes
    for i in np.nonzero(~surely_fits(lengths, 1, out, budget))[0].tolist():
        ok = [s for s in sizes if s >= out[i] and fits(lengths[[i]], s, budget)]
        if not ok:
            raise ValueError(
                f"sequence of length {int(lengths[i])} fits no group of the vocabulary (sizes "
                f"{', '.join(map(str, sizes))}) within token_budget {budget}; raise token_budget, "
                "max_communicators, or set max_communicators: 0"
            )
        out[i] = ok[0]
    return out


def legal_sizes(groups: Groups, vocab: Vocabulary, lengths: np.ndarray, budget: int) -> Groups | None:
    """Each group's size moved to an allowed one: the largest <= it that still fits the token
    budget, else the smallest larger one that fits; ``None`` if some group fits none."""
    sizes = vocab.sizes
    out = []
    for size, ids in groups:
        if size in sizes:
            out.append((size, ids))
            continue
        seqs = lengths[ids]
        down = [s for s in sizes if s < size and fits(seqs, s, budget)]
        up = [s for s in sizes if s > size and fits(seqs, s, budget)]
        if not down and not up:
            return None
        out.append((down[-1] if down else up[0], ids))
    return out


def layout(
    groups: Groups, vocab: Vocabulary, lengths: np.ndarray, budget: int
) -> list[list[tuple[int, int, list[int]]]]:
    """Place groups of allowed sizes on vocabulary ranges: waves of ``(start, size, seq_ids)``.

    Largest first, each on the first free range of its size (left family, then right);
    single ranks fill what is left. A group that finds no free range takes the largest
    smaller allowed size that has one and still fits the token budget, else waits for an
    extra wave (always placeable: an empty wave has every range free).
    """
    n = vocab.world_size
    pending = sorted(groups, key=lambda g: (-g[0], min(g[1])))
    waves: list[list[tuple[int, int, list[int]]]] = []
    while pending:
        free = np.ones(n, dtype=bool)
        placed: list[tuple[int, int, list[int]]] = []
        later: Groups = []
        singles: list[list[int]] = []
        for size, ids in pending:
            if size == 1:
                singles.append(ids)
                continue
            got = _first_free(size, free, vocab)
            if got is None:
                for s in reversed([s for s in vocab.sizes if 1 < s < size]):
                    if fits(lengths[ids], s, budget):
                        got = _first_free(s, free, vocab)
                        if got is not None:
                            size = s
                            break
            if got is None:
                later.append((size, ids))
                continue
            free[got : got + size] = False
            placed.append((got, size, ids))
        spots = np.nonzero(free)[0].tolist()
        for k, ids in enumerate(singles):
            if k < len(spots):
                placed.append((spots[k], 1, ids))
            else:
                later.append((1, ids))
        if not placed:  # an empty wave fits any allowed size: only a size outside the vocabulary gets here
            raise ValueError(f"group sizes {sorted({g[0] for g in later})} are not all in the vocabulary")
        waves.append(placed)
        pending = later
    return waves


def _first_free(size: int, free: np.ndarray, vocab: Vocabulary) -> int | None:
    """Start of the first vocabulary range of ``size`` whose ranks are all free, or ``None``."""
    starts = vocab.starts(size)
    if not starts:
        return None
    s = np.asarray(starts, dtype=np.int64)
    busy = np.concatenate([[0], np.cumsum(~free)])
    ok = np.nonzero(busy[s + size] == busy[s])[0]
    return int(s[ok[0]]) if ok.size else None
