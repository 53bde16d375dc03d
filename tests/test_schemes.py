"""Scheme objects: their blocks cover attention exactly, the executor runs exactly them, they are priced.

- every scheme's blocks, mapped to global positions, cover each (query, key) pair the mask
  allows exactly once per group (per rank for Ulysses, which splits heads instead);
- the executor's kernel calls on 3 gloo processes are the scheme's blocks, forward and
  backward (one implementation: this checks the executor against the scheme);
- the cost model prices Ulysses and refuses the degrees it cannot run.
"""

from __future__ import annotations

import itertools
from collections import Counter
from unittest import mock

import numpy as np
import pytest
import torch

from fcp_tune.attention import cp_attention, shard
from fcp_tune.attention.blocks import segment_rows
from fcp_tune.costmodel import CostModel
from fcp_tune.errors import FcpTuneError
from fcp_tune.launch import run_local
from fcp_tune.modelcfg import PRESETS, ModelConfig
from fcp_tune.profile.reference import reference_profile
from fcp_tune.schemes import REGISTRY, SCHEMES, get_scheme
from fcp_tune.schemes.layout import shard_layout


def _cu(lengths):
    return [0] + np.cumsum(lengths).tolist()


def _global_rows(scheme: str, layout, step: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Global packed position of each query-buffer row and key-buffer row (see each scheme module)."""
    everything = np.arange(layout.cu_seqlens[-1])
    if scheme == "ulysses":
        return everything, everything
    mine = layout.global_indices(rank)
    if scheme == "allgather":
        return mine, everything
    return mine, layout.global_indices((rank - step) % layout.degree)


def _pairs(scheme: str, layout, causal: bool, rank: int) -> Counter:
    blocks = get_scheme(scheme).blocks(layout, causal)
    seen: Counter = Counter()
    for t in range(blocks.steps):
        qpos, kpos = _global_rows(scheme, layout, t, rank)
        sel = (blocks.q_len[t, rank] > 0) & (blocks.k_len[t, rank] > 0)
        for q0, q1, k0, k1, c in zip(*(a[t, rank][sel].tolist() for a in (blocks.q0, blocks.q1, blocks.k0, blocks.k1, blocks.causal))):
            for i, j in itertools.product(range(q1 - q0), range(k1 - k0)):
                if not c or j <= i:
                    seen[(int(qpos[q0 + i]), int(kpos[k0 + j]))] += 1
    return seen


def _expected(lengths, causal: bool) -> Counter:
    want: Counter = Counter()
    base = 0
    for n in lengths:
        for i, j in itertools.product(range(n), range(n)):
            if not causal or j <= i:
                want[(base + i, base + j)] += 1
        base += n
    return want


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("causal", [True, False])
def test_blocks_cover_every_allowed_pair_exactly_once(scheme, causal):
    for d, lengths in [(1, [5, 1]), (2, [7, 1, 2]), (3, [1, 2, 11]), (4, [9, 16, 3]), (5, [23])]:
        layout = shard_layout(_cu(lengths), d)
        want = _expected(lengths, causal)
        if scheme == "ulysses":  # each rank attends everything, for its slice of the heads
            for r in range(d):
                assert _pairs(scheme, layout, causal, r) == want
        else:
            assert sum((_pairs(scheme, layout, causal, r) for r in range(d)), Counter()) == want


def test_registry_names_and_blocks_shapes():
    assert SCHEMES == ("allgather", "ring", "ulysses")
    assert all(REGISTRY[n].name == n for n in SCHEMES)
    with pytest.raises(ValueError, match="unknown scheme 'x'"):
        get_scheme("x")
    layout = shard_layout([0, 10, 13], 3)
    assert get_scheme("ring").blocks(layout, True).q0.shape == (3, 3, 2, 1)
    assert get_scheme("allgather").blocks(layout, True).q0.shape == (1, 3, 2, 4)
    assert get_scheme("ulysses").blocks(layout, True).head_share == pytest.approx(1 / 3)
    from fcp_tune.profile.collectives import OPS

    for scheme in REGISTRY.values():  # every collective a scheme needs is one the profiler measures
        assert scheme.ops and set(scheme.ops) <= set(OPS)
        steps = scheme.comm_steps(4, 100.0, PRESETS["tiny"])
        assert steps and {s.op for s in steps} == set(scheme.ops)


# --- the executor runs the scheme's blocks ---------------------------------------------------

HEADS, KV_HEADS, LENGTHS = 6, 3, (1, 2, 7, 13)


def _record_rank(rank: int, world: int):
    """Run every scheme, both masks; return the (q_len, k_len, causal, heads) of every kernel call."""
    import fcp_tune.attention.blocks as blocks  # every autograd function calls the kernels through it

    calls: list = []

    def spy(real, kind):
        def wrapped(*args):
            q_ranges, k_ranges, causal = args[-4:-1]  # both kernels end (..., q_ranges, k_ranges, causal, scale)
            q = args[0] if kind == "fwd" else args[2]  # accumulate_backward(grads, dout, q, ...)
            for (a, b), (c, d) in zip(q_ranges, k_ranges):
                calls[-1][kind].append((b - a, d - c, int(causal), q.shape[1]))
            return real(*args)
        return wrapped

    cu = _cu(LENGTHS)
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(cu[-1], h, 4, generator=g, dtype=torch.float64) for h in (HEADS, KV_HEADS, KV_HEADS)]
    for scheme, causal in itertools.product(SCHEMES, (True, False)):
        calls.append({"scheme": scheme, "causal": causal, "fwd": [], "bwd": []})
        with mock.patch.multiple(blocks, block_forward=spy(blocks.block_forward, "fwd"),
                                 accumulate_backward=spy(blocks.accumulate_backward, "bwd")):
            local = [shard(t, cu).requires_grad_() for t in x]
            cp_attention(*local, cu, causal=causal, scheme=scheme).sum().backward()
    return calls


def test_executor_computes_exactly_the_scheme_blocks():
    world = 3
    per_rank = run_local(_record_rank, world, timeout=60)
    layout = shard_layout(_cu(LENGTHS), world)
    for rank, calls in enumerate(per_rank):
        for c in calls:
            blocks = get_scheme(c["scheme"]).blocks(layout, c["causal"])
            heads = round(HEADS * blocks.head_share)
            want = sorted(tuple(row) + (heads,) for row in segment_rows(blocks, rank).tolist())
            assert sorted(c["fwd"]) == want, (rank, c["scheme"], c["causal"])
            assert sorted(c["bwd"]) == want, (rank, c["scheme"], c["causal"])


# --- priced like the others ------------------------------------------------------------------


def test_cost_model_prices_ulysses_and_refuses_infeasible_degrees():
    prof = reference_profile(8)
    model = PRESETS["llama3-8b"]  # 32 query heads, 8 K/V heads: Ulysses runs 1, 2, 4, 8
    uly = CostModel.from_profile(prof, model, "ulysses", 8)
    ring = CostModel.from_profile(prof, model, "ring", 8)
    lengths = [32768, 4096]
    for d in (1, 2, 4, 8):
        assert uly.group_time(lengths, d) > 0
    assert uly.group_time(lengths, 1) == ring.group_time(lengths, 1)  # no communication at d = 1
    assert uly.group_time(lengths, 8) < uly.group_time(lengths, 4) < uly.group_time(lengths, 2)
    for d in (3, 5, 6, 7):
        assert uly.group_time(lengths, d) == float("inf")  # never the cheapest choice
        with pytest.raises(FcpTuneError, match=f"degree {d} must divide the K/V head count 8"):
            uly.check_degree(d)
    # the head-layout output it keeps for backward shows in memory
    assert uly.group_memory(lengths, 4) > ring.group_memory(lengths, 4)


def test_ulysses_comm_steps_move_every_head_twice_per_direction():
    model = ModelConfig(hidden=96, heads=12, kv_heads=6, ffn_hidden=64)
    steps = get_scheme("ulysses").comm_steps(3, 10.0, model)
    assert [(s.phase, s.op) for s in steps] == [("forward", "all_to_all")] * 2 + [("backward", "all_to_all")] * 2
    assert steps[0].nbytes == 10 * (12 + 2 * 6) * 8 * 4  # Q, K, V of the widest rank, float32
    assert get_scheme("ulysses").comm_steps(1, 10.0, model) == ()


def test_planner_with_the_cost_model_never_gives_ulysses_a_degree_it_cannot_run():
    from fcp_tune.planner import plan_batch
    from fcp_tune.policy import Policy

    n, budget = 8, 8192
    cm = CostModel.from_profile(reference_profile(8), PRESETS["llama3-8b"], "ulysses", n)
    rng = np.random.default_rng(0)
    used = set()
    for _ in range(10):
        lens = np.minimum(np.maximum(rng.lognormal(np.log(2048), 1.3, size=24), 1), n * budget // 2).astype(int)
        batch = lens[np.cumsum(lens) <= n * budget].tolist()
        for kind in ("adaptive", "pow2"):
            plan = plan_batch(batch, Policy(kind, n, budget, "ulysses"), cost=cm)
            used |= {g.size for w in plan.waves for g in w.groups}
            assert cm.predict(plan, batch).step_time > 0
    assert used and used <= {1, 2, 4, 8}
    # a plan that does use one is refused by name, not priced
    static = plan_batch([40000], Policy("static", n, budget, "ulysses", degree=6), cost=cm)
    with pytest.raises(FcpTuneError, match="degree 6 must divide the K/V head count 8"):
        cm.predict(static, [40000])


def test_feasible_cost_keeps_the_default_planner_off_degrees_ulysses_cannot_run():
    from fcp_tune.planner import plan_batch
    from fcp_tune.planner.cost import DefaultCost, LimitedCost, feasible_cost
    from fcp_tune.policy import Policy

    tiny = PRESETS["tiny"]  # 4 query heads, 2 K/V heads: Ulysses runs 1 and 2
    assert feasible_cost(DefaultCost(), "ring", tiny, 4) == DefaultCost()  # nothing to restrict
    cost = feasible_cost(DefaultCost(), "ulysses", tiny, 4)
    assert isinstance(cost, LimitedCost) and cost.sizes == (1, 2)
    assert cost.group_time([100], 3) == float("inf") and cost.group_time([100], 2) == DefaultCost().group_time([100], 2)
    batch = [3000, 2500, 900, 700, 300, 120, 40, 7]
    unrestricted = plan_batch(batch, Policy("adaptive", 4, 2048, "ulysses"), cost=DefaultCost())
    assert {g.size for w in unrestricted.waves for g in w.groups} - {1, 2}  # the default cost alone would
    plan = plan_batch(batch, Policy("adaptive", 4, 2048, "ulysses"), cost=cost)
    assert {g.size for w in plan.waves for g in w.groups} <= {1, 2}
