"""The adaptive (FCP) planner: any group size, chosen per batch to minimise predicted time.

1. **Memory-aware packing** (as in the paper). Every sequence needs at least
   ``m = min_degree(L)`` ranks. Sequences sharing a minimum degree are packed
   best-fit-decreasing into bins of that many ranks (exact per-rank capacity
   ``token_budget``); sequences with ``m >= 2`` never share (two of them do not fit).
2. **Waves.** When the bins' minimum degrees exceed ``N`` ranks, the batch runs in several
   waves. Two splits are planned in full and the one with the lower sum of wave makespans
   (an upper bound on the critical path) kept: *balanced* (largest work first to the
   least-loaded of the fewest waves) and *sorted* (slowest bins first into the first wave
   with room, so costly work shares a wave).
3. **Degrees per wave.** Candidates, best predicted makespan wins:
   the bins at their minimum degrees; a *pool of degree g* for g = 1 and, unless g = 1 is
   within 3 % of the wave's lower bound, larger g tried in order of their optimistic
   estimates (:mod:`.pool`): long bins are rows that may take any degree, the remaining
   sequences are dealt over groups of about g ranks; and, when no pool fits, the paper's DP
   over the packed bins (:func:`_choose`, with bins of short sequences allowed to split).
   Every rank split between rows and pool is the least-makespan assignment of
   :mod:`.solve`, the exact optimum of the paper's ``DP[i][j]`` recurrence.
4. **Layout.** Groups are laid out contiguously, largest first. Degrees are any integer
   (3, 5, 6, ...); ``g = 1`` keeps short sequences data-parallel (no communication) and
   larger pools balance compute when memory is nearly full.
"""

from __future__ import annotations

import heapq

import numpy as np

from fcp_tune.planner.adaptive_wave import draft, realise, row_table
from fcp_tune.planner.cost import CostFn, allowed_sizes, cost_table
from fcp_tune.planner.joint import critical_path, plan_joint
from fcp_tune.planner.packing import pack_class
from fcp_tune.planner.solve import fill_spare, least_makespan_extra
from fcp_tune.planner.table import estimate_table, tabulated
from fcp_tune.planner.vocab import Vocabulary, build_vocabulary, layout, legal_sizes, min_sizes, restrict
from fcp_tune.policy import Policy, min_degrees

Placed = list[list[tuple[int, int, list[int]]]]

# Group sizes tried for a wave's pool (plus the whole wave): roughly 1.4x apart, 3/6/12/... too.
POOL_DEGREES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
PATIENCE = 2  # realised pool drafts in a row without gain before giving up
NEAR_BOUND = 1.03  # stop trying pool degrees when within 3 % of the wave's lower bound


def plan_adaptive(lengths: np.ndarray, policy: Policy, cost: CostFn) -> Placed:
    """Waves of ``(start, size, seq_ids)`` for the adaptive policy (see the module docstring)."""
    n, budget = policy.world_size, policy.token_budget
    # Only sizes the cost allows (the scheme's feasible degrees: planner.cost.feasible_cost).
    vocab = build_vocabulary(n, policy.gpus_per_node, policy.max_communicators, allowed_sizes(cost))
    cost, bins, m, lengths = _bins(lengths, policy, cost, vocab)
    base = cost_table(cost, [lengths[b] for b in bins], m[:, None])[:, 0]
    splits = [_balanced_waves(m, base * m, n)]
    if len(splits[0]) > 1:
        splits.append(_sorted_waves(m, base, n))
    best_total, best_plan = float("inf"), []
    for waves in splits:
        total, layouts = 0.0, []
        for w in waves:
            span, placed = _plan_wave([bins[i] for i in w], m[w], lengths, n, budget, cost, vocab)
            total += span
            layouts.extend(placed)
            if total >= best_total:
                break  # already slower than the other split
        else:
            best_total, best_plan = total, layouts
    # The paper's plan is one candidate; the joint list schedule (module .joint) another.
    joint = plan_joint(bins, m, lengths, n, budget, cost, vocab)
    if joint is not None and joint[0] < critical_path(best_plan, lengths, n, cost):
        return joint[1]
    return best_plan


def _bins(
    lengths: np.ndarray, policy: Policy, cost: CostFn, vocab: Vocabulary
) -> tuple[CostFn, list[list[int]], np.ndarray, np.ndarray]:
    """Step 1 (memory-aware packing): the planning cost, the packed bins and their minimum sizes.

    The cost is the tabulated form (module :mod:`.table`), limited to the vocabulary's sizes
    when it is capped. Raises (naming the length) for a sequence that fits nowhere.
    """
    n, budget = policy.world_size, policy.token_budget
    cost = tabulated(cost)  # a calibrated model's tabulated form (module fcp_tune.planner.table)
    mins = min_degrees(lengths, budget)
    over = np.nonzero(mins > n)[0]
    if over.size:
        policy.degree_for(int(lengths[over[0]]))  # raises, naming the length
    if vocab.capped:  # plan with vocabulary sizes only (module fcp_tune.planner.vocab)
        cost = restrict(cost, vocab)
        mins = min_sizes(lengths, mins, vocab, budget)
    bins: list[list[int]] = []
    bin_min: list[int] = []
    for d in sorted(set(mins.tolist()), reverse=True):
        members = np.nonzero(mins == d)[0].tolist()
        packed = [[s] for s in members] if d >= 4 else pack_class(members, lengths, d, budget)
        bins.extend(packed)
        bin_min.extend([d] * len(packed))
    return cost, bins, np.asarray(bin_min, dtype=np.int64), lengths


def _balanced_waves(m: np.ndarray, work: np.ndarray, n: int) -> list[list[int]]:
    """Bins per wave: largest work first to the least-loaded of the fewest waves with room."""
    count = max(1, -(-int(m.sum()) // n))
    load = [0.0] * count
    free = [n] * count
    members: list[list[int]] = [[] for _ in range(count)]
    for i in sorted(range(len(m)), key=lambda i: (-work[i], -m[i], i)):
        need = int(m[i])
        best = -1
        for w in range(len(load)):
            if free[w] >= need and (best < 0 or load[w] < load[best]):
                best = w
        if best < 0:
            load.append(0.0)
            free.append(n)
            members.append([])
            best = len(load) - 1
        load[best] += float(work[i])
        free[best] -= need
        members[best].append(i)
    return [sorted(w) for w in members if w]


def _sorted_waves(m: np.ndarray, time: np.ndarray, n: int) -> list[list[int]]:
    """Bins per wave: slowest first, each into the first wave with room (costly bins together)."""
    free: list[int] = []
    members: list[list[int]] = []
    for i in sorted(range(len(m)), key=lambda i: (-time[i], -m[i], i)):
        need = int(m[i])
        for w in range(len(free)):
            if free[w] >= need:
                break
        else:
            free.append(n)
            members.append([])
            w = len(free) - 1
        free[w] -= need
        members[w].append(i)
    return [sorted(w) for w in members]


def _plan_wave(
    bins: list[list[int]], m: np.ndarray, lengths: np.ndarray, n: int, budget: int, cost: CostFn,
    vocab: Vocabulary,
) -> tuple[float, list[list[tuple[int, int, list[int]]]]]:
    """Predicted time and layout (one wave, or more if the vocabulary's ranges do not tile) of
    the best candidate for one wave.

    Candidates: the bins at their minimum degrees; pools of degree ``g`` (:mod:`.pool`),
    ``g > 1`` only when ``g = 1`` ends more than 3 % above the wave's lower bound and
    until two degrees in a row bring no gain; the paper's DP over the packed bins with
    splitting (:func:`_choose`) when no pool fits. With a capped vocabulary every candidate's
    sizes are moved to allowed ones and the pick is laid out on vocabulary ranges.
    """

    def fix(groups: list[tuple[int, list[int]]] | None) -> list[tuple[int, list[int]]] | None:
        return legal_sizes(groups, vocab, lengths, budget) if vocab.capped and groups is not None else groups

    short = [s for b, d in zip(bins, m.tolist()) if d == 1 for s in b]
    rows = [b for b, d in zip(bins, m.tolist()) if d > 1]
    row_min = [d for d in m.tolist() if d > 1]
    c1 = (
        cost_table(cost, [lengths[[s]] for s in short], np.ones((len(short), 1), dtype=np.int64))[:, 0]
        if short
        else np.zeros(0)
    )
    slack = n - int(m.sum())
    candidates: list[list[tuple[int, list[int]]]] = [[(int(d), b) for d, b in zip(m, bins)]]
    spans = [_makespan(candidates[0], lengths, cost)]
    bound = _lower_bound(rows, row_min, c1, lengths, n, cost)
    args = (rows, row_min, short, c1, lengths, n, budget, cost)
    first = draft(1, *args)
    got = fix(realise(first, short, c1, lengths, n, budget, cost) if first else None)
    if got is not None:
        candidates.append(got)
        spans.append(_makespan(got, lengths, cost))
    if min(spans) > NEAR_BOUND * bound:  # else within 3 % of the wave's lower bound: done
        sizes = sorted({g for g in POOL_DEGREES if 1 < g < n} | {n} - {1})
        drafts = sorted((d for d in (draft(g, *args) for g in sizes) if d), key=lambda d: (d.estimate, d.g))
        misses = 0
        for d in drafts:
            if d.estimate >= min(spans) or misses >= PATIENCE:
                break  # the rest are predicted no better even if perfectly balanced
            got = fix(realise(d, short, c1, lengths, n, budget, cost))
            if got is None:
                continue
            best = min(spans)
            candidates.append(got)
            spans.append(_makespan(got, lengths, cost))
            misses = 0 if spans[-1] < best else misses + 1
            if min(spans) <= NEAR_BOUND * bound:
                break
    chosen = fix(_choose(bins, m, slack, lengths, budget, cost)) if len(candidates) == 1 and slack > 0 else None
    if chosen is not None:
        candidates.append(chosen)
        spans.append(_makespan(chosen, lengths, cost))
    if vocab.capped:  # lay every candidate out on the vocabulary; the time as laid out decides
        winner: tuple[float, int, list] = (float("inf"), 0, [])
        for i in sorted(range(len(candidates)), key=lambda i: (spans[i], i)):
            if spans[i] >= winner[0]:
                break  # laying out never makes a candidate faster
            waves = layout(candidates[i], vocab, lengths, budget)
            total = sum(_makespan([(g[1], g[2]) for g in w], lengths, cost) for w in waves)
            winner = min(winner, (total, i, waves), key=lambda b: (b[0], b[1]))
        return winner[0], winner[2]
    pick = min(range(len(candidates)), key=lambda i: (spans[i], i))
    groups = sorted(candidates[pick], key=lambda g: (-g[0], min(g[1])))
    out = []
    start = 0
    for size, ids in groups:
        out.append((start, size, sorted(ids)))
        start += size
    return spans[pick], [out]


def _lower_bound(
    rows: list[list[int]], row_min: list[int], c1: np.ndarray, lengths: np.ndarray, n: int, cost: CostFn
) -> float:
    """No plan of the wave beats all its work spread evenly, nor any long bin alone on all ranks."""
    work = float(c1.sum())
    if rows:
        degs = np.array(row_min, dtype=np.int64)
        table = estimate_table(cost, [lengths[b] for b in rows], np.stack([degs, np.full_like(degs, n)], axis=1))
        work += float((table[:, 0] * degs).sum())
        return max(work / n, float(table[:, 1].max()))
    return work / n


def _makespan(groups: list[tuple[int, list[int]]], lengths: np.ndarray, cost: CostFn) -> float:
    """Predicted time of the slowest group, from the tabulated cost's estimate (module .table).

    It ranks one wave's candidates; the plan this planner returns is compared with the joint
    schedule on exact costs (:func:`.joint.critical_path`) in :func:`plan_adaptive`.
    """
    sizes = np.array([[size] for size, _ in groups], dtype=np.int64)
    return float(estimate_table(cost, [lengths[ids] for _, ids in groups], sizes).max())


def _choose(
    bins: list[list[int]], m: np.ndarray, slack: int, lengths: np.ndarray, budget: int, cost: CostFn
) -> list[tuple[int, list[int]]]:
    """Fallback when the pool does not fit: the packed bins are the rows; short bins may split."""
    k = len(bins)
    table = row_table(bins, m, slack, lengths, budget, cost)
    degrees = m[:, None] + np.arange(slack + 1)[None, :]
    bin_lengths = [lengths[b] for b in bins]
    counts = np.array([len(b) for b in bins], dtype=np.int64)

    # Split option for bins of short sequences: several groups instead of one CP group.
    splittable = np.nonzero((m == 1) & (counts >= 2))[0]
    split_est = np.full_like(table, np.inf)
    if splittable.size:
        tops = [[int(bin_lengths[i].max())] for i in splittable.tolist()]
        longest = cost_table(cost, tops, np.ones((splittable.size, 1), dtype=np.int64))[:, 0]
        q = np.minimum(degrees[splittable], counts[splittable, None]).clip(1)
        est = np.maximum(table[splittable, :1] / q, longest[:, None])
        split_est[splittable] = np.where(degrees[splittable] > 0, est, np.inf)
    choice = np.minimum(table, split_est)

    extra = fill_spare(choice, least_makespan_extra(choice, slack), slack)
    groups: list[tuple[int, list[int]]] = []
    for i in range(k):
        s = int(extra[i])
        d = int(m[i]) + s
        if split_est[i, s] < table[i, s]:
            parts = _split(bins[i], lengths, d, cost, limit=float(table[i, s]))
            if parts is not None:
                groups.extend(parts)
                continue
        groups.append((d, bins[i]))
    return groups


def _split(
    ids: list[int], lengths: np.ndarray, degree: int, cost: CostFn, limit: float
) -> list[tuple[int, list[int]]] | None:
    """Deal a bin of short sequences over ``q`` groups sharing ``degree`` ranks, or ``None``.

    ``q = min(degree, len(ids))`` groups; the first ``degree % q`` get one rank more.
    Longest first to the group with the least load per rank (load: time at degree 1).
    Returns ``None`` when a part would be slower than ``limit`` (the unsplit group's time).
    """
    q = min(degree, len(ids))
    sizes = [degree // q + (1 if j < degree % q else 0) for j in range(q)]
    weights = cost_table(cost, [lengths[[s]] for s in ids], np.ones((len(ids), 1)))[:, 0]
    order = sorted(range(len(ids)), key=lambda j: (-weights[j], ids[j]))
    heap = [(0.0, j) for j in range(q)]
    parts: list[list[int]] = [[] for _ in range(q)]
    loads = [0.0] * q
    for j in order:
        _, p = heapq.heappop(heap)
        parts[p].append(ids[j])
        loads[p] += float(weights[j])
        heapq.heappush(heap, (loads[p] / sizes[p], p))
    times = cost_table(cost, [lengths[p] for p in parts], np.array(sizes)[:, None])[:, 0]
    if float(times.max()) > limit:
        return None
    return [(sizes[p], parts[p]) for p in range(q)]
