"""The main job (`fcp-tune run` with no arguments): what it compares, how, and what it predicts."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fcp_tune.cli import app
from fcp_tune.cli.run import DEFAULT_COMPARE, build_run_config
from fcp_tune.executor.runner import Step, busy_critical_path
from fcp_tune.executor.step import StepRecord
from fcp_tune.planner import Plan, plan_batch
from fcp_tune.planner.plan import Group, Wave
from fcp_tune.workload import BatchSampler

runner = CliRunner()


def _default_config(**kw):
    args = dict(policy=None, workload=None, nproc=None, steps=4, warmup=1, compare=list(DEFAULT_COMPARE),
                model="tiny", seed=0, lr=1e-3, scheme=None, global_batch_tokens=None)
    return build_run_config(**{**args, **kw})


def test_default_configuration_is_one_rank_per_core_and_leads_with_megatron():
    cfg = _default_config()
    assert cfg.world_size == 2  # the bundled CPU profile was measured with 2 processes, one per core
    assert [n for n, _ in cfg.policies] == ["adaptive", "megatron", "mcore-dynamic", "static", "pow2"]
    budget = cfg.policies[0][1].token_budget
    lens = cfg.workload.seqlens
    assert max(lens) > budget  # some documents need a group ...
    assert sum(x <= budget // 4 for x in lens) > len(lens) / 2  # ... most are short
    assert "cpu-epyc-2proc-tiny" in cfg.profile and cfg.cost is not None


def test_cost_model_predicts_adaptive_ahead_of_megatron_static_for_the_default_configuration():
    cfg = _default_config()
    sampler = BatchSampler(cfg.workload, seed=0)
    totals = {}
    for name, policy in cfg.policies:
        cost = cfg.planner_cost(policy)
        totals[name] = sum(
            cfg.cost.predict(plan_batch(b, policy, cost=cost), b).step_time
            for b in (sampler.batch(i) for i in range(8))
        )
    assert totals["megatron"] / totals["adaptive"] > 1.15
    assert totals["adaptive"] <= min(totals.values()) * 1.02


def _rec(rank, cpu, comm, sync=0.01, opt=0.02):
    return StepRecord(policy="p", step=0, rank=rank, wall_s=9.0, busy_s=0.0, comm_s=0.0, idle_s=0.0, loss=0.0,
                      tokens=10, waves=len(cpu), layout="", plan_digest=0, peak_bytes=0, plan_s=0.0,
                      sync_s=sync, opt_s=opt, wave_cpu_s=tuple(cpu), wave_comm_s=tuple(comm))


def test_busy_critical_path_follows_the_plan_not_the_wall_clock():
    # wave 0: ranks 0-1 together, rank 2 alone; wave 1: rank 0 alone, ranks 1-2 together.
    plan = Plan(3, (Wave((Group(0, 2, (0,)), Group(2, 1, (1,)))), Wave((Group(0, 1, (2,)), Group(1, 2, (3,))))), "adaptive")
    recs = (_rec(0, [1.0, 0.5], [0.3, 0.0]), _rec(1, [0.8, 1.0], [0.1, 0.2], sync=0.05),
            _rec(2, [2.0, 0.9], [0.0, 0.4], opt=0.03))
    # group (0,2) of wave 0: max CPU 1.0 + least comm 0.1 = 1.1; rank 2 alone: 2.0.
    # wave 1 group (1,2) starts when rank 2 is free (2.0) and lasts 1.0 + 0.2: 3.2; + sync 0.01 + opt 0.03.
    assert busy_critical_path(plan, recs) == pytest.approx(3.2 + 0.01 + 0.03)
    step = Step(recs)
    assert step.wall_s == 9.0 and step.rank_cpu_s == (1.5, 1.8, 2.9)
    with pytest.raises(ValueError, match="rank order"):
        Step(recs[::-1])


@pytest.mark.slow
def test_main_job_json_has_the_critical_path_repeats_and_predictions():
    res = runner.invoke(app, ["run", "--steps", "2", "--repeats", "2", "--compare", "megatron", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["schema"] == "fcp-tune/run" and data["schema_version"] == 2
    assert data["compared_by"] == "critical_path" and data["repeats"] == 2 and data["world_size"] == 2
    names = [p["name"] for p in data["policies"]]
    assert names == ["adaptive", "megatron"]
    for p in data["policies"]:
        assert [(s["round"], s["warmup"]) for s in p["steps"]] == [(0, True), (0, False), (1, False)]
        assert all(s["critical_path_s"] > 0 and s["predicted_s"] > 0 for s in p["steps"])
        assert len(p["seconds_per_round"]["critical_path"]) == 2
        assert p["predicted_speedup_of_first"] > 0
    mega = data["policies"][1]
    assert mega["policy"]["kind"] == "megatron" and mega["predicted_speedup_of_first"] > 1.0
