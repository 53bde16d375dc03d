"""Megatron-Core dynamic context parallelism (kind ``mcore-dynamic``), rule by rule.

Megatron-Core's hybrid context parallelism (``--hybrid-context-parallel``,
``max_seqlen_per_dp_cp_rank``) schedules a global batch's sub-samples over the whole
DP x CP group of ``N`` ranks with ``BalancedCPScheduler``
(``megatron/core/pipeline_parallel/hybrid_cp_schedule.py``, Megatron-LM commit d98e8a6,
Aug 2026). This module re-implements its rules (read, not copied; each rule is cited in
``docs/POLICIES.md``), with the policy's ``token_budget`` as ``max_seqlen_per_dp_cp_rank``:

1. degree ``gpus_needed(L) = 2^ceil(log2(L / budget))`` (at least 1);
2. load estimate ``L^2 / cp`` per GPU of the group (``get_total_workload``);
3. sequences sorted longest first, once per global batch (``get_groups_and_subsamples``);
   each scheduling round (``next_hdp_group``) splits the remaining list into as many
   contiguous buckets as distinct degrees (``make_buckets_equal``), then takes bucket heads
   in order: a head goes to a new group on the lowest free GPUs when enough are free, else
   to the least-loaded existing group of its size; a head that fits neither is skipped;
4. a round ends when no head fits, or, once a smaller degree than the round's first has
   been placed, as soon as every GPU's load is within 5 % of the largest;
5. ``trim_overload`` hands the most-loaded group's last sub-sample back while that
   narrows the spread; ``fill_empty_gpus`` doubles the first smallest group (pushing the
   groups after it right) until no GPU is idle;
6. a GPU runs its group's sub-samples one after another (one forward and backward each),
   and the round ends with a barrier over all ``N`` ranks.

Sequences are padded to a multiple of ``2 N`` (dp x cp x 2, ``GPTDatasetConfig``'s rule for
hybrid CP in ``megatron/core/datasets/gpt_dataset.py``) by the kind before planning.

As a :class:`~fcp_tune.planner.plan.Plan`: round ``r``'s ``j``-th sub-sample of a group
is that group in wave ``base_r + j``; the next round starts after the round's longest
group list. The plan's critical path (:func:`~fcp_tune.planner.cost.finish_times`) does not
wait for the end-of-round barrier, which can only make this baseline look faster.
Where Megatron-LM would fail (a degree above the largest group, ``fill_empty_gpus``
without room to double a group, possible only when ``N`` is not a power of two) this
module raises for the first and leaves the GPUs idle for the second.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from fcp_tune.planner.cost import CostFn
from fcp_tune.policy import Policy

Placed = list[list[tuple[int, int, list[int]]]]
DELTA = 0.05  # balance slack of next_hdp_group
OVERLOAD = 1.1  # make_buckets_equal closes a bucket past 110 % of its work target


class _Round:
    """One ``next_hdp_group`` round: groups (creation order = rank order) and per-GPU loads."""

    def __init__(self, world_size: int) -> None:
        self.n = world_size
        self.load = np.zeros(world_size)
        self.starts: list[int] = []
        self.sizes: list[int] = []
        self.items: list[list[tuple[int, int]]] = []  # (sample id, length) per group, in run order
        self.by_size: dict[int, list[int]] = {}
        self.next_free = 0  # groups take the lowest free GPUs, so the free GPUs are a suffix

    def free(self) -> int:
        return self.n - self.next_free

    def place(self, sid: int, length: int, need: int, cost: float) -> None:
        """Rule 3: a new group when enough GPUs are free (a new group's load, 0, beats any
        existing group's), else the least-loaded group of size ``need`` (first on ties)."""
        if self.free() >= need:
            g = len(self.sizes)
            self.starts.append(self.next_free)
            self.sizes.append(need)
            self.items.append([])
            self.by_size.setdefault(need, []).append(g)
            self.next_free += need
        else:
            g = min(self.by_size[need], key=lambda k: self.load[self.starts[k]])
        self.items[g].append((sid, length))
        self.load[self.starts[g] : self.starts[g] + self.sizes[g]] += cost

    def group_of(self, rank: int) -> int:
        for g, (a, s) in enumerate(zip(self.starts, self.sizes)):
            if a <= rank < a + s:
                return g
        raise AssertionError(f"rank {rank} is in no group")


def make_buckets(items: list[tuple[int, int]], need: dict[int, int], work: dict[int, float]) -> list[deque]:
    """``make_buckets_equal``: contiguous buckets, as many as distinct degrees, each closed
    past 110 % of an equal share of the work or when the sequences left are needed to give
    every remaining bucket one (the upstream count, which advances twice per bucket)."""
    k = len({need[length] for _, length in items})
    target = sum(work[length] for _, length in items) / k
    buckets: list[deque] = []
    cur: list[tuple[int, int]] = []
    cur_work, remaining_k = 0.0, k
    for i, (sid, length) in enumerate(items):
        w = work[length]
        if cur and (cur_work + w > target * OVERLOAD or len(items) - i <= remaining_k - len(buckets)):
            buckets.append(deque(cur))
            cur, cur_work = [], 0.0
            remaining_k -= 1
        cur.append((sid, length))
        cur_work += w
    if cur:
        buckets.append(deque(cur))
    return buckets


def next_round(
    items: list[tuple[int, int]], world_size: int, need: dict[int, int], work: dict[int, float]
) -> tuple[_Round, list[tuple[int, int]]]:
    """``next_hdp_group``: one round's groups and the sub-samples left for later rounds."""
    rnd = _Round(world_size)
    buckets = make_buckets(items, need, work)
    first_need: int | None = None
    check_balance = False
    while buckets:
        pick = None
        for idx, bucket in enumerate(buckets):
            if not bucket:
                continue
            d = need[bucket[0][1]]
            if rnd.by_size.get(d) or rnd.free() >= d:
                pick = idx
                break
        if pick is None:
            break
        sid, length = buckets[pick].popleft()
        d = need[length]
        if first_need is None:
            first_need = d
        rnd.place(sid, length, d, work[length])
        while buckets and not buckets[0]:
            buckets.pop(0)
        if d < first_need:
            check_balance = True
        top = float(rnd.load.max())
        if check_balance and buckets and top - float(rnd.load.min()) <= DELTA * top:
            break
    leftovers = [item for bucket in buckets for item in bucket]
    _trim_overload(rnd, leftovers, work)
    _fill_empty(rnd)
    return rnd, leftovers


def _trim_overload(rnd: _Round, leftovers: list[tuple[int, int]], work: dict[int, float]) -> None:
    """Pop the most-loaded group's last sub-sample (to the leftovers) while it narrows the spread."""
    while True:
        top, low = float(rnd.load.max()), float(rnd.load.min())
        if top - low <= DELTA * top or low == 0:
            break
        g = rnd.group_of(int(np.argmax(rnd.load)))
        if len(rnd.items[g]) <= 1:
            break
        sid, length = rnd.items[g][-1]
        proj = rnd.load.copy()
        proj[rnd.starts[g] : rnd.starts[g] + rnd.sizes[g]] -= work[length]
        if float(proj.max() - proj.min()) < top - low:
            rnd.items[g].pop()
            rnd.load = proj
            leftovers.append((sid, length))
        else:
            break


def _fill_empty(rnd: _Round) -> None:
    """``fill_empty_gpus``: double the first smallest group, pushing later groups right, until
    no GPU idles (or, off upstream's powers of two, no group can double: the rest stay idle)."""
    while rnd.free() > 0 and rnd.sizes:
        m = min(rnd.sizes)
        grow = min(2 * m, rnd.n) - m
        if grow > rnd.free() or grow == 0:
            return
        g = rnd.sizes.index(m)
        rnd.sizes[g] += grow
        for k in range(g + 1, len(rnd.starts)):
            rnd.starts[k] += grow
        rnd.next_free += grow


def schedule(lengths: np.ndarray, degrees: np.ndarray, world_size: int) -> list[_Round]:
    """Every round of one global batch (``get_groups_and_subsamples``)."""
    need = {int(length): int(d) for length, d in zip(lengths.tolist(), degrees.tolist())}
    work = {length: length * length / d for length, d in need.items()}  # rule 2
    items = sorted(enumerate(lengths.tolist()), key=lambda x: x[1], reverse=True)  # stable, like upstream
    rounds = []
    while items:
        rnd, items = next_round(items, world_size, need, work)
        rounds.append(rnd)
    return rounds


def plan_mcore_dynamic(lengths: np.ndarray, policy: Policy, cost: CostFn) -> Placed:
    """Waves of ``(start, size, seq_ids)`` (module docstring); ``cost`` is unused (the
    scheduler balances its own ``L^2 / cp`` estimate)."""
    degrees = policy.degrees_for(lengths)  # rule 1; raises, naming the length, past N
    waves: Placed = []
    for rnd in schedule(lengths, degrees, policy.world_size):
        base = len(waves)
        for start, size, items in zip(rnd.starts, rnd.sizes, rnd.items):
            for j, (sid, _) in enumerate(items):
                while base + j >= len(waves):
                    waves.append([])
                waves[base + j].append((start, size, [sid]))
    return waves
