"""The tabulated cost (planner/table.py) against the direct CostModel evaluation; efficiency bounds."""

from __future__ import annotations

import numpy as np
import pytest

from fcp_tune.costmodel import CostModel
from fcp_tune.modelcfg import PRESETS
from fcp_tune.planner import plan_batch
from fcp_tune.planner.cost import limit_sizes
from fcp_tune.planner.table import TabulatedCost, grid_length, grid_position, tabulated
from fcp_tune.policy import Policy
from fcp_tune.profile.schema import load_profile
from fcp_tune.workload import BatchSampler, load_workload

PROFILE = "profiles/h100-64-reference.yaml"
LLAMA = PRESETS["llama3-8b"]


@pytest.fixture(scope="module")
def prof():
    return load_profile(PROFILE)


def test_grid_positions_bracket_every_length():
    lengths = np.arange(1, 200_000)
    lo, hi, w = grid_position(lengths)
    a, b = grid_length(lo), grid_length(hi)
    assert (a <= lengths).all() and (b >= lengths).all() and ((w >= 0) & (w <= 1)).all()
    np.testing.assert_allclose(a + (b - a) * w, lengths)
    assert (grid_length(np.arange(1, 257)) == np.arange(1, 257)).all()  # exact for short lengths


@pytest.mark.parametrize("scheme,degrees", [
    ("allgather", (1, 2, 3, 5, 7, 8, 12, 16, 31, 48, 64)),
    ("ring", (1, 2, 3, 6, 8, 16)),
    ("ulysses", (1, 2, 4, 8)),
])
def test_tabulated_agrees_with_direct_within_half_a_percent(prof, scheme, degrees):
    cm = CostModel.from_profile(prof, LLAMA, scheme, 64)
    table = cm.tabulated()
    lengths = np.unique(np.geomspace(1, 64 * 16384, 120).astype(np.int64))
    for d in degrees:
        got = table.group_time_table([[int(x)] for x in lengths], np.full((lengths.size, 1), d))[:, 0]
        want = np.array([cm.group_time([int(x)], d) for x in lengths])
        assert np.array_equal(np.isfinite(got), np.isfinite(want))
        ok = np.isfinite(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=5e-3)
        for x in lengths[::17].tolist():  # the scalar entry point gives the same
            assert table.group_time([x], d) == pytest.approx(float(got[lengths.tolist().index(x)]), rel=1e-12)


def test_bins_of_several_sequences(prof):
    cm = CostModel.from_profile(prof, LLAMA, "allgather", 64)
    table = TabulatedCost(cm)
    rng = np.random.default_rng(0)
    bins = [rng.integers(1, 9000, int(rng.integers(2, 30))).tolist() for _ in range(40)]
    for d in (1, 2, 5, 16):
        got = table.group_time_table(bins, np.full((len(bins), 1), d))[:, 0]
        want = np.array([cm.group_time(b, d) for b in bins])
        if d == 1:  # additive: interpolation error only
            np.testing.assert_allclose(got, want, rtol=5e-3)
        else:  # not additive: the wrapped cost answers exactly
            np.testing.assert_array_equal(got, want)
        est = table.estimate_table(bins, np.full((len(bins), 1), d))[:, 0]
        np.testing.assert_allclose(est, want, rtol=0.05)  # the planner's optimistic estimate


def test_tabulated_keeps_size_limits_and_is_one_per_model(prof):
    cm = CostModel.from_profile(prof, LLAMA, "allgather", 64)
    assert cm.tabulated() is cm.tabulated()
    limited = tabulated(limit_sizes(cm, (1, 2, 8)))
    assert limited.sizes == (1, 2, 8) and limited.inner is cm.tabulated()
    assert limited.group_time([5000], 3) == float("inf")


def test_cost_model_fill_is_bit_identical(prof):
    a = CostModel.from_profile(prof, LLAMA, "ring", 64)
    b = CostModel.from_profile(prof, LLAMA, "ring", 64)
    lens = [7, 300, 4097, 20000, 20000, 65536]
    for d in (2, 3, 8):
        x = a.group_time(lens, d)  # one vectorised layout for the missing lengths
        for length in lens:
            b._seq(length, d)  # one layout per length
        assert x == b.group_time(lens, d)


def test_efficiency_at_most_one_on_planned_batches(prof):
    cm = CostModel.from_profile(prof, LLAMA, "allgather", 16)
    wl = load_workload("lognormal:median=2000,sigma=1.3,max=65536,n=2000", global_batch_tokens=16 * 16384)
    for batch in BatchSampler(wl, seed=3).batches(3):
        for kind in ("adaptive", "pow2"):
            plan = plan_batch(batch, Policy(kind, 16, 16384), cost=cm)
            pred = cm.predict(plan, batch, 16384)
            assert 0 < pred.efficiency <= 1 + 1e-12


def test_perfectly_balanceable_batch_reaches_one(prof):
    cm = CostModel.from_profile(prof, LLAMA, "allgather", 8)
    batch = [4096] * 8  # one short sequence per rank: data parallel is the ideal plan
    plan = plan_batch(batch, Policy("adaptive", 8, 16384), cost=cm)
    pred = cm.predict(plan, batch, 16384)
    assert pred.efficiency == pytest.approx(1.0, rel=1e-9)


def test_cached_grid_positions_equal_the_direct_ones():
    """The per-length cache of TabulatedCost answers exactly what grid_position computes."""
    table = TabulatedCost(lambda *a: 0.0)  # the inner cost is not asked for positions
    rng = np.random.default_rng(3)
    lengths = np.concatenate([np.arange(1, 600), rng.integers(1, 300_000, 2000), [1 << 21, (1 << 21) + 7]])
    for got, want in zip(table._positions(lengths), grid_position(lengths)):
        np.testing.assert_array_equal(got, want)
