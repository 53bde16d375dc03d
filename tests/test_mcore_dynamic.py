"""The mcore-dynamic kind reproduces Megatron-Core's BalancedCPScheduler on hand-worked batches."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fcp_tune.errors import FcpTuneError
from fcp_tune.planner import plan_batch
from fcp_tune.planner.mcore_dynamic import _Round, _trim_overload, make_buckets
from fcp_tune.policy import Policy
from fcp_tune.policy.degrees import ceil_pow2


def _plan(lengths, n, budget):
    policy = Policy(kind="mcore-dynamic", world_size=n, token_budget=budget)
    padded = policy.padded(lengths).tolist()
    plan = plan_batch(padded, policy)
    plan.validate(padded, policy)
    return padded, [[(g.start, g.size, g.seq_ids) for g in w.groups] for w in plan.waves]


def test_degree_rule_is_the_power_of_two_of_length_over_budget():
    p = Policy(kind="mcore-dynamic", world_size=8, token_budget=1000)
    got = {L: p.degree_for(L) for L in (1, 1000, 1001, 2000, 2001, 3999, 4001, 8000)}
    assert got == {1: 1, 1000: 1, 1001: 2, 2000: 2, 2001: 4, 3999: 4, 4001: 8, 8000: 8}
    with pytest.raises(FcpTuneError, match="does not fit"):
        p.degree_for(8001)
    # 2^ceil(log2(5)) = 8 > 6 ranks: does not fit N = 6 even though 5 ranks would hold it
    with pytest.raises(FcpTuneError, match="power-of-two"):
        Policy(kind="mcore-dynamic", world_size=6, token_budget=1000).degree_for(4500)


def test_padding_is_dp_times_cp_times_two():
    p = Policy(kind="mcore-dynamic", world_size=8, token_budget=1000)
    assert p.padded([1, 16, 17, 3000]).tolist() == [16, 16, 32, 3008]


def test_hand_worked_batch_order_buckets_and_rounds():
    # N = 8, budget 1024; padded to multiples of 16. Worked by hand in the module's rules:
    # loads L^2/cp: 3008 -> cp 4, 2000 and 1504 -> cp 2, the rest cp 1. Three degrees: three
    # buckets closed past 110 % of a third of the work: [3008], [2000], [1504, ..., 112].
    # Round 1: 3008 on ranks 0-3, 2000 on 4-5, 1504 on 6-7 (new groups while GPUs are free);
    # 912 needs one free GPU: none, and no group of size 1: the round ends; trim keeps the
    # single sub-samples; no GPU is empty.
    # Round 2 (the leftovers, still longest first): one degree, but the bucket count closes the
    # last sequence into a bucket of its own: 912..208 each on a new GPU 0..7, then 112 to the
    # least-loaded group (rank 7, 208^2), which runs it after 208.
    lens = [3000, 2000, 1500, 900, 800, 700, 600, 500, 400, 300, 200, 100]
    padded, waves = _plan(lens, 8, 1024)
    assert padded == [3008, 2000, 1504, 912, 800, 704, 608, 512, 400, 304, 208, 112]
    assert waves == [
        [(0, 4, (0,)), (4, 2, (1,)), (6, 2, (2,))],
        [(r, 1, (3 + r,)) for r in range(8)],
        [(7, 1, (11,))],
    ]


def test_buckets_follow_upstream_counting():
    need = {9: 1, 8: 1, 7: 1}
    work = {k: float(k * k) for k in need}
    # one degree: one bucket, except that the last sequence is kept back for "remaining buckets"
    assert [list(b) for b in make_buckets([(0, 9), (1, 8), (2, 7)], need, work)] == [[(0, 9), (1, 8)], [(2, 7)]]


def test_fill_empty_gpus_doubles_the_smallest_groups():
    # 1504 -> cp 2 on ranks 0-1, 912 -> cp 1 on rank 2; five GPUs idle. Fill: the size-1 group
    # doubles (ranks 2-3), then the first size-2 group doubles to 0-3 and pushes the other to
    # 4-5, which doubles to 4-7: every GPU busy, two groups of 4.
    padded, waves = _plan([1500, 900], 8, 1024)
    assert padded == [1504, 912]
    assert waves == [[(0, 4, (0,)), (4, 4, (1,))]]
    padded, waves = _plan([3000, 1500], 8, 1000)
    assert waves == [[(0, 4, (0,)), (4, 4, (1,))]]


def test_trim_overload_hands_back_the_last_sub_sample_when_it_narrows_the_spread():
    rnd = _Round(3)
    work = {10: 100.0, 9: 81.0, 3: 9.0, 2: 4.0}
    for sid, length in ((0, 9), (1, 10), (2, 3), (3, 2)):
        rnd.place(sid, length, 1, work[length])
    # three single-GPU groups (loads 81, 100, 9); the 2 goes to the least loaded: 9 + 4
    rnd.items[2].append((4, 10))  # rank 2 also runs a 10: loads 81, 100, 9 + 4 + 100 = 113
    rnd.load[2] += 100.0
    assert rnd.load.tolist() == [81.0, 100.0, 113.0]
    left: list = []
    _trim_overload(rnd, left, work)
    # removing the 10 from rank 2 (113 -> 13) widens the spread (100 - 13 = 87 > 32): kept
    assert left == [] and rnd.load.tolist() == [81.0, 100.0, 113.0]
    rnd2 = _Round(2)
    for sid, length in ((0, 10), (1, 9), (2, 3)):
        rnd2.place(sid, length, 1, work[length])
    rnd2.items[0].append((3, 2))
    rnd2.load[0] += 4.0  # loads 104 (10, 2) and 90 (9, 3): spread 14 > 5 % of 104
    left = []
    _trim_overload(rnd2, left, work)
    assert left == [(3, 2)] and rnd2.load.tolist() == [100.0, 90.0]  # spread 10 < 14: handed back


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 1024),
    budget=st.sampled_from([512, 1000, 4096, 16384]),
    lengths=st.lists(st.integers(1, 40000), min_size=1, max_size=60),
)
def test_plans_are_valid_for_every_world_size(n, budget, lengths):
    policy = Policy(kind="mcore-dynamic", world_size=n, token_budget=budget)
    padded = policy.padded(lengths)
    if max(ceil_pow2(-(-int(x) // budget)) for x in padded.tolist()) > n:
        with pytest.raises(ValueError):
            plan_batch(padded.tolist(), policy)
        return
    plan = plan_batch(padded.tolist(), policy)
    plan.validate(padded.tolist(), policy)
    # every group a power of two or the whole world, each sub-sample run on its own
    for wave in plan.waves:
        for g in wave.groups:
            assert g.size == n or g.size & (g.size - 1) == 0
            assert len(g.seq_ids) == 1
    assert sorted(s for w in plan.waves for g in w.groups for s in g.seq_ids) == list(range(len(lengths)))
    assert np.all(np.asarray([g.start for w in plan.waves for g in w.groups]) >= 0)
