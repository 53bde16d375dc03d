"""The Megatron-style static baseline (kind ``megatron``) and the ideal-bound efficiency.

Packing and padding are checked on small batches worked by hand; efficiency is checked to
stay <= 1 for every kind and to equal 1 on a batch a perfect plan balances.
"""

from __future__ import annotations

import numpy as np
import pytest

from fcp_tune.costmodel import CostModel
from fcp_tune.errors import FcpTuneError
from fcp_tune.modelcfg import PRESETS
from fcp_tune.planner import candidate_ranges, plan_batch
from fcp_tune.planner.megatron import deal_round_robin, first_fit
from fcp_tune.policy import KINDS, Policy, min_degree_for, pad_to_multiple
from fcp_tune.policy.specs import baseline_policies, resolve_policy
from fcp_tune.profile.reference import reference_profile
from fcp_tune.search.evaluate import Evaluator, Scored, reference_scores
from fcp_tune.workload import Workload


def _wl(seqlens, batch_tokens):
    return Workload(name="t", seqlens=tuple(seqlens), global_batch_tokens=batch_tokens, max_len=None, source="test")


def test_padding_rounds_up_to_the_multiple():
    assert pad_to_multiple([1, 4, 5, 8, 9], 4).tolist() == [4, 4, 8, 8, 12]
    assert pad_to_multiple([3, 7], 1).tolist() == [3, 7]
    mega = Policy("megatron", 8, 100, degree=4)
    assert KINDS["megatron"].pad_multiple(mega) == 8  # 2 * cp chunks, two per CP rank
    assert KINDS["megatron"].pad_multiple(Policy("megatron", 8, 100, degree=1)) == 1  # no CP, no padding
    with pytest.raises(ValueError, match="multiple"):
        pad_to_multiple([1], 0)


def test_first_fit_keeps_arrival_order():
    # 5 -> bin 0; 3 fills bin 0; 4 -> bin 1; 2 -> bin 1; 6 -> bin 2; 1 -> bin 1 (first with room).
    assert first_fit([5, 3, 4, 2, 6, 1], 8) == [[0, 1], [2, 3, 5], [4]]
    assert first_fit([8, 8], 8) == [[0], [1]]
    with pytest.raises(ValueError, match="sequence 1"):
        first_fit([3, 9], 8)


def test_micro_batches_go_round_robin_to_replicas():
    waves = deal_round_robin([[0], [1], [2], [3], [4]], degree=2, world_size=4)
    assert waves == [[(0, 2, [0]), (2, 2, [1])], [(0, 2, [2]), (2, 2, [3])], [(0, 2, [4])]]


def test_plan_by_hand():
    # degree 2, budget 10: pad to multiples of 4 -> 8, 8, 12, 4, 12; micro-batch 20 tokens.
    policy = Policy("megatron", 4, 10, degree=2)
    lengths = [7, 5, 9, 3, 12]
    plan = plan_batch(lengths, policy)
    plan.validate(lengths, policy)
    got = [[(g.start, g.size, g.seq_ids) for g in w.groups] for w in plan.waves]
    assert got == [[(0, 2, (0, 1, 3)), (2, 2, (2,))], [(0, 2, (4,))]]
    assert set(plan.ranges()) <= set(candidate_ranges(policy)) == {(0, 2), (2, 2)}


def test_degree_rules():
    with pytest.raises(FcpTuneError, match="divide world_size"):
        Policy("megatron", 6, 100, degree=4)
    with pytest.raises(FcpTuneError, match="required"):
        Policy("megatron", 8, 100)
    policy = Policy("megatron", 8, 100, degree=2)
    assert policy.degree_for(150) == 2 and policy.possible_degrees() == (2,)
    with pytest.raises(FcpTuneError, match="does not fit megatron degree 2"):
        policy.degree_for(250)  # Megatron-LM does not raise the degree: the run fails
    with pytest.raises(ValueError, match="megatron degree"):
        plan_batch([10, 250], policy)


def test_cli_spec_picks_the_smallest_dividing_degree_that_fits_padded():
    base = Policy("adaptive", 8, 9)  # odd budget: 18 tokens pad to 20 > 2 x 9 at cp 2
    wl = _wl((18, 3), 100)
    assert resolve_policy("megatron", base, wl).degree == 4  # 3 does not divide 8
    assert resolve_policy("static", base, wl).degree == 2  # no padding rule
    assert resolve_policy("megatron:8", base, wl).degree == 8


@pytest.fixture(scope="module")
def cost8():
    return CostModel.from_profile(reference_profile(1), PRESETS["llama3-8b"], "allgather", 8)


def test_efficiency_is_one_when_a_perfect_plan_balances(cost8):
    batch = [4096] * 8  # one equal sequence per rank, no communication: nothing to gain
    for kind, extra in (("adaptive", {}), ("static", {"degree": 1})):
        policy = Policy(kind, 8, 8192, **extra)
        pred = cost8.predict(plan_batch(batch, policy, cost=cost8), batch, policy.token_budget)
        assert pred.efficiency == pytest.approx(1.0, rel=1e-12)
    # Megatron packs two 4096s per 8192-token micro-batch: half the replicas idle.
    policy = Policy("megatron", 8, 8192, degree=1)
    pred = cost8.predict(plan_batch(batch, policy, cost=cost8), batch, policy.token_budget)
    assert pred.efficiency < 0.7
    full = [8192] * 8  # full micro-batches: one per replica, perfectly balanced
    pred = cost8.predict(plan_batch(full, policy, cost=cost8), full, policy.token_budget)
    assert pred.efficiency == pytest.approx(1.0, rel=1e-12)


def test_efficiency_never_exceeds_one(cost8):
    rng = np.random.default_rng(3)
    for trial in range(12):
        batch = np.clip(rng.lognormal(np.log(3000), 1.3, 24).astype(int), 16, 8 * 8192).tolist()
        wl = _wl(batch, sum(batch) // 2)
        ev = Evaluator(cost8, wl, 8, batches=2, seed=trial)
        for name, policy in baseline_policies(8, 8192, "allgather", max(batch)):
            score = ev.score(policy)
            assert 0 < score.efficiency <= 1.0 + 1e-9, (name, score.efficiency)


def test_bound_uses_the_cheapest_fitting_degree(cost8):
    # 20K tokens need 3 ranks of 8192: the bound charges rank-seconds at >= 3 ranks, not one rank.
    one = cost8.sequence_work(20000)
    fit = cost8.sequence_work(20000, 8192)
    assert fit > one
    assert fit == pytest.approx(min(d * (cost8.group_time([20000], d) - cost8._wave_s)
                                    for d in range(3, 7)))


def test_bound_uses_the_exact_memory_minimum_at_odd_budgets(cost8):
    # 32763 tokens fit 4 x 8191 by the ceiling, but zigzag chunking puts 8192 tokens on a rank
    # at 4 ranks: the bound starts at 5 ranks, as every plan does (min_degree_for).
    length, budget = 32763, 8191
    assert -(-length // budget) == 4 and min_degree_for(length, budget) == 5
    assert cost8.sequence_work(length, budget) == pytest.approx(
        min(d * (cost8.group_time([length], d) - cost8._wave_s) for d in range(5, 9)))


def test_reference_scores_name_the_three_baselines(cost8):
    wl = _wl((30000, 5000, 800, 700, 12000), 60000)
    ev = Evaluator(cost8, wl, 8, batches=1)
    scores = [Scored(n, p, ev.score(p)) for n, p in baseline_policies(8, 8192, "allgather", 30000)]
    refs = reference_scores(scores)
    assert set(refs) == {"megatron", "megatron_smallest", "best_static", "mcore_dynamic"}
    assert refs["megatron_smallest"][0] == "megatron:4"  # smallest divisor of 8 holding 30000 tokens
    megas = [s for s in scores if s.policy.kind == "megatron"]
    assert [s.name for s in megas] == ["megatron:4", "megatron:8"]  # every degree a user can run
    assert refs["megatron"][1].step_s == min(s.score.step_s for s in megas)  # the tuned one
    assert all(s.policy.scheme == "ring" for s in scores if s.policy.kind in ("megatron", "mcore-dynamic"))
    assert refs["best_static"][1].step_s == min(s.score.step_s for s in scores if s.policy.kind == "static")
