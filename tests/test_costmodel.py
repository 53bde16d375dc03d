"""The calibrated cost model on synthetic and reference profiles: look-ups, group times, plans."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fcp_tune.costmodel import CostModel, Prediction
from fcp_tune.errors import FcpTuneError
from fcp_tune.modelcfg import PRESETS
from fcp_tune.planner import plan_batch, step_cost
from fcp_tune.profile.interp import same_fabric
from fcp_tune.planner.plan import Group, Plan, Wave
from fcp_tune.policy import Policy
from fcp_tune.profile.collectives import fit_alpha_beta
from fcp_tune.profile.flops import attention_bwd_flops, attention_fwd_flops
from fcp_tune.profile.reference import reference_profile
from fcp_tune.profile.schema import CommFit, Extrapolation
from fcp_tune.profile.synthetic import synthetic_profile

TINY = PRESETS["tiny"]


def _model(prof, scheme="allgather", world_size=None):
    return CostModel.from_profile(prof, prof.model, scheme, world_size)


# --- attention look-ups ----------------------------------------------------------------------


def test_attention_exact_at_grid_points():
    prof = synthetic_profile()
    cm = _model(prof)
    for p in prof.attention:
        assert cm.attention_time(p.q_len, p.k_len, p.causal) == pytest.approx(p.fwd_s + p.bwd_s, rel=1e-12)


def test_attention_interpolates_power_laws_exactly():
    # No overhead: full blocks cost exactly c*q*k, so log-linear interpolation is exact in between.
    prof = synthetic_profile(overhead_s=0.0)
    cm = _model(prof)
    h, d, rate = TINY.heads, TINY.head_dim, 1e11

    def exact(q, k, c):
        return (attention_fwd_flops(q, k, c, h, d) + attention_bwd_flops(q, k, c, h, d)) / rate

    for q, k in [(100, 300), (777, 64), (2000, 3000)]:
        assert cm.attention_time(q, k, False) == pytest.approx(exact(q, k, False), rel=1e-9)
    assert cm.attention_time(1500, 1500, True) == pytest.approx(exact(1500, 1500, True), rel=1e-9)
    # Past the grid (4096): the edge's throughput, i.e. FLOP scaling.
    assert cm.attention_time(16384, 16384, True) == pytest.approx(exact(16384, 16384, True), rel=1e-9)
    assert cm.attention_time(10000, 2000, False) == pytest.approx(exact(10000, 2000, False), rel=1e-9)
    # Bottom-right causal block with more keys than queries: prefix + square.
    assert cm.attention_time(256, 1024, True) == pytest.approx(exact(256, 1024, True), rel=1e-9)


def test_attention_sane_outside_the_grid():
    prof = synthetic_profile()  # grid 64 .. 4096, with a fixed overhead
    cm = _model(prof)
    edge = cm.attention_time(4096, 4096, True)
    assert cm.attention_time(8192, 8192, True) == pytest.approx(4 * edge)  # edge throughput
    assert cm.attention_time(4096, 8192, False) == pytest.approx(2 * cm.attention_time(4096, 4096, False))
    low = cm.attention_time(64, 64, True)
    assert cm.attention_time(8, 8, True) == pytest.approx(low)  # latency-bound: no cheaper than the edge
    assert cm.attention_time(0, 100, False) == 0.0


def test_attention_monotone_in_length():
    cm = _model(synthetic_profile())
    lens = np.unique(np.geomspace(16, 20000, 60).astype(int))
    causal = [cm.attention_time(int(s), int(s), True) for s in lens]
    full_q = [cm.attention_time(int(s), 1000, False) for s in lens]
    full_k = [cm.attention_time(1000, int(s), False) for s in lens]
    for series in (causal, full_q, full_k):
        assert all(b >= a for a, b in zip(series, series[1:]))


def test_attention_scales_to_another_head_shape():
    prof = synthetic_profile()
    wide = PRESETS["small"]  # 8 heads x 32 vs tiny 4 x 32
    cm = CostModel.from_profile(prof, wide)
    assert cm.attention_time(1024, 1024, True) == pytest.approx(2 * _model(prof).attention_time(1024, 1024, True))


# --- collectives -----------------------------------------------------------------------------


def test_comm_fit_exact_and_used():
    prof = synthetic_profile(alpha_s=3e-5, beta_Bps=2e10)
    for c in prof.collectives:
        a, b = fit_alpha_beta([s.bytes for s in c.samples], [s.median_s for s in c.samples])
        assert a == pytest.approx(3e-5, rel=1e-6) and b == pytest.approx(2e10, rel=1e-6)
    cm = _model(prof)
    assert cm.comm_time("all_gather", 3, 1e6) == pytest.approx(3e-5 + 1e6 / 2e10)
    assert cm.comm_time("all_gather", 1, 1e6) == 0.0
    assert cm.comm_time("all_reduce", 4, 0) == 0.0


def test_comm_between_measured_sizes_interpolates():
    prof = reference_profile(1)
    # Drop size 5 of all_gather and ask for it: between 4 and 8 measured.
    from dataclasses import replace

    kept = tuple(c for c in prof.collectives if not (c.op == "all_gather" and c.group_size == 5))
    cm = _model(replace(prof, collectives=kept))
    lo, hi = cm.comm_time("all_gather", 4, 1 << 26), cm.comm_time("all_gather", 6, 1 << 26)
    assert lo <= cm.comm_time("all_gather", 5, 1 << 26) <= hi


def test_comm_extrapolates_past_the_node():
    prof = reference_profile(8)
    cm = CostModel.from_profile(prof, prof.model, "ring", 64)
    big = 256 << 20
    intra, inter = cm.comm_time("all_gather", 8, big), cm.comm_time("all_gather", 16, big)
    assert inter > intra
    # 8 rails x 45 GB/s = 360 GB/s of bus bandwidth at 16 ranks (intra-node: 470 GB/s).
    assert big * (15 / 16) / (inter - cm._comm.fit_for("all_gather", 16).alpha_s) == pytest.approx(360e9, rel=1e-6)
    # p2p across nodes: one 45 GB/s link.
    assert cm.comm_time("p2p_ring", 16, big) == pytest.approx(max(8e-6, 10e-6) + big / 45e9)
    assert cm.comm_time("all_to_all", 64, big) > cm.comm_time("all_to_all", 8, big)


def test_larger_world_without_extrapolation_follows_the_same_fabric_rule():
    """A measured profile predicts more ranks than it had: bus bandwidth and per-step latency kept."""
    prof = synthetic_profile(world_size=2)
    cm = CostModel.from_profile(prof, TINY, "allgather", world_size=8)
    two = prof.curve("all_gather", 2).fit
    eight = cm._comm.fit_for("all_gather", 8)
    assert eight.alpha_s == pytest.approx(two.alpha_s * 7)  # 7 ring steps instead of 1
    assert eight.beta_Bps * 7 / 8 == pytest.approx(two.beta_Bps * 1 / 2)  # same bus bandwidth
    ring = cm._comm.fit_for("p2p_ring", 8)
    assert ring == prof.curve("p2p_ring", 2).fit  # one exchange per ring step, whatever the ring's size
    assert cm.group_time([4096], 8) > 0
    with pytest.raises(FcpTuneError, match="m < n"):
        same_fabric("all_gather", 4, two, 4)
    ok = CostModel.from_profile(synthetic_profile(
        world_size=2, extrapolation=Extrapolation(2, CommFit(1e-4, 1e8))), TINY, world_size=8)
    assert ok.group_time([4096], 8) > 0


def test_missing_collective_is_an_error():
    prof = synthetic_profile(world_size=4, ops=("p2p_ring", "all_reduce"))
    with pytest.raises(FcpTuneError, match="no all_gather data for 2 ranks"):
        CostModel.from_profile(prof, TINY, "allgather")
    assert CostModel.from_profile(prof, TINY, "ring").group_time([1000], 4) > 0
    with pytest.raises(FcpTuneError, match="no all_to_all data for 2 ranks"):
        CostModel.from_profile(prof, TINY, "ulysses")
    with pytest.raises(FcpTuneError, match="unknown scheme"):
        CostModel.from_profile(prof, TINY, "nope")


# --- group_time ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["allgather", "ring"])
def test_group_time_single_rank_is_attention_plus_linear(scheme):
    prof = synthetic_profile()
    cm = _model(prof, scheme)
    lin = TINY.linear_flops_per_token() / 1e11
    for L in (1, 100, 4096, 10000):
        want = TINY.layers * cm.attention_time(L, L, True) + L * lin
        assert cm.group_time([L], 1) == pytest.approx(want, rel=1e-12)
    assert cm.group_time([300, 200], 1) == pytest.approx(cm.group_time([300], 1) + cm.group_time([200], 1))
    assert cm.group_time([], 3) == 0.0 and cm.group_time([0, 0], 2) == 0.0


@pytest.mark.parametrize("scheme", ["allgather", "ring"])
def test_group_time_monotone_and_parallel(scheme):
    cm = _model(synthetic_profile(alpha_s=1e-5, beta_Bps=1e10), scheme)
    for d in (1, 2, 3, 4):
        series = [cm.group_time([L], d) for L in range(64, 9000, 97)]
        assert all(b >= a for a, b in zip(series, series[1:])), (scheme, d)
    # A long sequence gets faster with more ranks when comm is cheap.
    t = [cm.group_time([16384], d) for d in (1, 2, 4)]
    assert t[0] > t[1] > t[2]


def test_group_time_comm_terms():
    slow = synthetic_profile(alpha_s=1.0, beta_Bps=1e18)  # every transfer costs 1 s
    ag, ring = _model(slow, "allgather"), _model(slow, "ring")
    layers = TINY.layers
    # allgather: one all-gather and one reduce-scatter per layer, not overlapped.
    assert ag.group_time([1000], 2) == pytest.approx(layers * 2.0, rel=0.01)
    # ring, d=2: forward 1 K/V step; backward 1 K/V + dK/dV step plus the final dK/dV hop.
    assert ring.group_time([1000], 2) == pytest.approx(layers * (1.0 + 2.0 + 1.0), rel=0.01)
    # ring, d=3: forward 2 steps; backward 1 + 2 + 1 + final 1.
    assert ring.group_time([1000], 3) == pytest.approx(layers * (2.0 + 5.0), rel=0.01)


def test_group_time_is_memoised(monkeypatch):
    # Each (length, degree) is laid out and priced once: counted at the scheme's block
    # enumeration (the costly part; one call may lay out several missing lengths of a group),
    # the second pass over the same bins computes nothing new.
    from fcp_tune.schemes.ring import Ring

    calls = []
    real = Ring.blocks
    monkeypatch.setattr(Ring, "blocks", lambda self, layout, causal: calls.extend((x, layout.degree) for x in layout.seqlens)
                        or real(self, layout, causal))
    cm = CostModel.from_profile(reference_profile(8), PRESETS["llama3-8b"], "ring", 64)
    rng = np.random.default_rng(0)
    bins = [list(rng.integers(100, 60000, size=4)) for _ in range(200)]
    degrees = [int(d) for d in rng.integers(1, 33, size=200)]
    first = [cm.group_time(b, d) for b, d in zip(bins, degrees)]
    distinct = {(int(x), d) for b, d in zip(bins, degrees) for x in b}
    assert sorted(calls) == sorted(distinct)  # each pair once, no other
    again = [cm.group_time(b, d) for b, d in zip(bins, degrees)]
    assert sorted(calls) == sorted(distinct)
    assert first == again
    assert all(math.isfinite(x) and x > 0 for x in first)


def test_degree_outside_world_is_an_error():
    cm = _model(synthetic_profile(world_size=2))
    with pytest.raises(FcpTuneError, match="degree must be in"):
        cm.group_time([100], 3)


# --- whole plans -----------------------------------------------------------------------------


def test_predict_a_plan():
    prof = synthetic_profile(world_size=4)
    cm = _model(prof, "ring")
    seqlens = [3000, 500, 400, 300, 200]
    plan = Plan(4, (Wave((Group(0, 2, (0,)), Group(2, 1, (1, 2)), Group(3, 1, (3,)))), Wave((Group(0, 4, (4,)),))), "adaptive")
    pred = cm.predict(plan, seqlens)
    assert isinstance(pred, Prediction)
    g0 = cm.group_time([3000], 2)
    assert pred.rank_busy[0][:2] == (g0, g0)
    assert pred.rank_busy[0][2] == cm.group_time([500, 400], 1)
    assert pred.wave_times[0] == max(pred.rank_busy[0])
    assert sum(pred.wave_times) == pytest.approx(step_cost(plan, seqlens, cm))
    fixed = cm.comm_time("all_reduce", 4, TINY.num_params() * 4) + TINY.num_params() * 1e-9
    assert pred.step_time == pytest.approx(sum(pred.wave_times) + fixed)
    assert pred.grad_sync_s > 0 and pred.optimizer_s > 0
    assert 0 < pred.efficiency <= 1
    static = TINY.num_params() * 16
    assert all(m > static for m in pred.peak_memory_bytes)
    assert pred.peak_memory_bytes[0] > pred.peak_memory_bytes[3]  # 1500 tokens vs 300
    assert set(pred.to_dict()) >= {"step_time", "efficiency", "peak_memory_bytes"}


def test_cost_model_drives_the_planner():
    cm = CostModel.from_profile(reference_profile(1), PRESETS["llama3-8b"], "allgather")
    policy = Policy(kind="adaptive", world_size=8, token_budget=16384)
    seqlens = [60000, 9000, 4000, 2000, 1500, 800, 500, 300, 200, 100]
    plan = plan_batch(seqlens, policy, cost=cm)
    plan.validate(seqlens, policy)
    pred = cm.predict(plan, seqlens)
    assert pred.step_time > 0 and 0 < pred.efficiency <= 1
