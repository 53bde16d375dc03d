"""The group vocabulary (pure, no process group): bounded, node-aligned, and what plans use."""

from __future__ import annotations

import numpy as np
import pytest

from fcp_tune.planner import DefaultCost, candidate_ranges, plan_batch
from fcp_tune.planner.vocab import build_vocabulary, layout, per_rank_count
from fcp_tune.policy import DEFAULT_MAX_COMMUNICATORS, Policy


def _check(v, n: int, g: int, cap: int) -> None:
    ranges = np.array(v.ranges, dtype=np.int64).reshape(-1, 2)
    starts, sizes = ranges[:, 0], ranges[:, 1]
    assert (sizes >= 2).all() and (starts >= 0).all() and (starts + sizes <= n).all()
    assert len(set(v.ranges)) == len(v.ranges) == v.count
    intra = sizes <= g
    # a group of at most a node's GPUs never straddles a node
    assert (starts[intra] // g == (starts[intra] + sizes[intra] - 1) // g).all()
    # a larger one is whole quarter nodes, or the world
    unit = max(1, g // 4)
    big = ~intra & ~((starts == 0) & (sizes == n))
    assert (starts[big] % unit == 0).all() and (sizes[big] % unit == 0).all()
    delta = np.zeros(n + 1, dtype=np.int64)
    np.add.at(delta, starts, 1)
    np.add.at(delta, starts + sizes, -1)
    members = np.cumsum(delta[:n])
    assert members.max(initial=0) == v.per_rank <= cap
    if n >= 2:
        assert (0, n) in set(v.ranges)  # any sequence the world can hold has a group
        assert set(range(2, min(g, n) + 1)) <= set(v.sizes)  # every size inside a node: 3, 5, 6 too


def test_vocabulary_is_valid_for_every_world_size_up_to_1024():
    for n in range(1, 1025):
        _check(build_vocabulary(n), n, 8, DEFAULT_MAX_COMMUNICATORS)


@pytest.mark.parametrize("g, cap", [(4, 8), (8, 12), (6, 30), (16, 24)])
def test_vocabulary_other_nodes_and_caps(g, cap):
    for n in list(range(1, 70)) + [96, 250, 256, 640, 1000, 1024]:
        _check(build_vocabulary(n, g, cap), n, g, cap)


def test_vocabulary_keeps_powers_of_two_and_is_far_below_all_ranges():
    v = build_vocabulary(1024)
    assert {2, 3, 5, 6, 7, 10, 14, 16, 24, 128, 512, 1024} <= set(v.sizes)
    assert v.count < 3_000 < 1024 * 1025 // 2
    assert build_vocabulary(64, max_communicators=0).count == 64 * 65 // 2 - 64  # uncapped: every range
    with pytest.raises(ValueError, match="max_communicators"):
        build_vocabulary(8, max_communicators=-1)


def _lognormal(count: int, world: int, budget: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(budget), 1.3, count).astype(np.int64), 1, world * budget // 2).tolist()


@pytest.mark.parametrize("n, count, budget", [(6, 40, 64), (8, 60, 128), (24, 150, 256), (64, 400, 512),
                                              (128, 600, 1024)])
def test_adaptive_plans_use_only_vocabulary_groups(n, count, budget):
    policy = Policy("adaptive", n, budget)
    vocab = build_vocabulary(n)
    allowed = set(candidate_ranges(policy))
    used: set[tuple[int, int]] = set()
    for seed in range(3):
        lengths = _lognormal(count, n, budget, seed)
        plan = plan_batch(lengths, policy, cost=DefaultCost())
        plan.validate(lengths, policy)
        assert set(plan.ranges()) <= allowed
        assert all(vocab.contains(a, s) for a, s in plan.ranges())
        used |= set(plan.ranges())
    assert per_rank_count(sorted(used), n) <= vocab.per_rank <= DEFAULT_MAX_COMMUNICATORS
    assert any(s > 1 for _, s in used)  # the batches really needed context parallelism


def test_layout_tiles_a_node_with_non_powers_of_two():
    v = build_vocabulary(16)
    lengths = np.ones(10, dtype=np.int64)
    waves = layout([(3, [1]), (5, [0]), (4, [2]), (1, [3])], v, lengths, budget=100)
    assert [sorted((a, s) for a, s, _ in w) for w in waves] == [[(0, 5), (5, 3), (8, 4), (12, 1)]]  # 5 + 3 fill a node
    over = layout([(8, [0]), (8, [1]), (5, [2])], v, lengths, budget=100)  # 21 ranks: a second wave
    assert [sorted((a, s) for a, s, _ in w) for w in over] == [[(0, 8), (8, 8)], [(0, 5)]]
