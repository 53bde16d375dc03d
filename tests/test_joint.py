"""Joint scheduling of waves (planner/joint.py): valid plans, never worse than the per-wave planner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcp_tune.costmodel import CostModel
from fcp_tune.modelcfg import PRESETS
from fcp_tune.planner import plan_batch
from fcp_tune.planner.adaptive import _bins  # the adaptive planner's packed bins
from fcp_tune.planner.joint import critical_path, plan_joint
from fcp_tune.planner.plan import Group, Plan, Wave
from fcp_tune.planner.vocab import build_vocabulary
from fcp_tune.policy import Policy, min_degree_for
from fcp_tune.profile.schema import load_profile
from fcp_tune.workload import BatchSampler, load_workload

ROOT = Path(__file__).resolve().parent.parent
TABLE = json.loads((Path(__file__).parent / "data" / "planner_regression.json").read_text())
# The table was recorded before the model config carried a training setup: no recompute, unsharded optimizer.
LLAMA = PRESETS["llama3-8b"].with_training(sharding="none", recompute="none")


@pytest.fixture(scope="module")
def costs():
    prof = load_profile(str(ROOT / TABLE["profile"]))
    return {n: CostModel.from_profile(prof, LLAMA, TABLE["scheme"], n) for n in (8, 16, 32, 40)}


def test_never_worse_than_the_per_wave_planner_on_the_regression_table(costs):
    """The table holds the pre-issue-16 planner's predicted steps (tests/data/planner_regression.json)."""
    budget = TABLE["token_budget"]
    better = 0
    for row in TABLE["rows"]:
        n = row["N"]
        wl = load_workload(TABLE["workloads"][row["workload"]], global_batch_tokens=int(row["fill"] * n * budget))
        batch = BatchSampler(wl, seed=row["seed"]).batch(0)
        policy = Policy("adaptive", n, budget, max_communicators=row["max_communicators"])
        plan = plan_batch(batch, policy, cost=costs[n])
        plan.validate(batch, policy)
        step = costs[n].predict(plan, batch, budget).step_time
        assert step <= row["step_s"] * (1 + 1e-9), row
        better += step < row["step_s"] * (1 - 1e-3)
    assert better >= len(TABLE["rows"]) // 4  # the joint schedule wins often, not only ties


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.sampled_from([8, 16, 32, 40]),
    cap=st.sampled_from([0, 4, 24]),
    fill=st.sampled_from([0.3, 1.0, 2.5]),
    seed=st.integers(0, 10_000),
)
def test_joint_schedules_are_valid_plans(costs, n, cap, fill, seed):
    budget = 8192
    rng = np.random.default_rng(seed)
    lengths: list[int] = []
    while sum(lengths) < fill * n * budget:
        x = int(min(rng.lognormal(np.log(1500), 1.4), n * budget // 2))
        lengths.append(max(1, x))
    lengths = [x if min_degree_for(x, budget) <= n else budget for x in lengths]
    policy = Policy("adaptive", n, budget, max_communicators=cap)
    vocab = build_vocabulary(n, policy.gpus_per_node, cap)
    cost, bins, m, arr = _bins(np.asarray(lengths, dtype=np.int64), policy, costs[n], vocab)
    got = plan_joint(bins, m, arr, n, budget, cost, vocab)
    if got is None:
        return
    span, placed = got
    plan = plan_batch(lengths, policy, cost=costs[n])  # the planner's pick: valid and no slower
    plan.validate(lengths, policy)
    joint = Plan(n, tuple(Wave(tuple(Group(a, b, tuple(sorted(ids))) for a, b, ids in sorted(w))) for w in placed),
                 "adaptive")
    joint.validate(lengths, policy)
    if vocab.capped:
        assert all(vocab.contains(g.start, g.size) for w in joint.waves for g in w.groups)
    assert span == pytest.approx(critical_path(placed, arr, n, cost), rel=1e-12)
    assert costs[n].predict(plan, lengths, budget).step_time <= costs[n].predict(joint, lengths, budget).step_time + 1e-9
