"""`fcp-tune validate`: error math, step comparison, profile choice, end-to-end runs, bad input."""

from __future__ import annotations


import json
import math
import socket
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from fcp_tune.cli import app
from fcp_tune.costmodel import CostModel
from fcp_tune.errors import FcpTuneError
from fcp_tune.executor.runner import Step
from fcp_tune.executor.step import StepRecord
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.planner import plan_batch
from fcp_tune.policy import Policy
from fcp_tune.profile.schema import save_profile
from fcp_tune.profile.synthetic import synthetic_profile
from fcp_tune.fidelity import (
    PolicyValidation, StepValidation, busy_mape, compare_step, default_profile_path, mape, percent_error, validate,
)
from fcp_tune.workload import BatchSampler, load_workload

runner = CliRunner()
TINY = ModelConfig(vocab_size=64, hidden=32, layers=1, heads=2, kv_heads=1, ffn_hidden=48, name="t")
SMALL_WL = "uniform:lo=8,hi=200,n=200"


# ---------------------------------------------------------------------- error math
def test_percent_error_sign_and_mape_on_hand_made_numbers():
    assert percent_error(2.0, 2.5) == pytest.approx(25.0)  # over-prediction is positive
    assert percent_error(2.0, 1.5) == pytest.approx(-25.0)
    assert mape([1.0, 2.0, 4.0], [1.1, 1.8, 4.0]) == pytest.approx((10 + 10 + 0) / 3)
    assert mape([0.5], [0.5]) == 0.0


@pytest.mark.parametrize("measured, predicted, word", [([], [], "no values"), ([1.0], [1.0, 2.0], "predicted"),
                                                      ([0.0], [1.0], "measured")])
def test_mape_rejects_bad_input(measured, predicted, word):
    with pytest.raises(FcpTuneError, match=word):
        mape(measured, predicted)


def _row(step, measured, predicted, busy_m=(1.0, 1.0), busy_p=(1.0, 1.0), warmup=False):
    return StepValidation(
        step=step, warmup=warmup, layout="2", sequences=3, tokens=100, measured_s=measured, predicted_s=predicted,
        error_pct=percent_error(measured, predicted), measured_busy_s=busy_m, predicted_busy_s=busy_p,
        busy_error_pct=tuple(percent_error(m, p) if p > 0 else None for m, p in zip(busy_m, busy_p)),
        plan_ms=1.0, idle_s=0.0, measured_sync_s=0.0, predicted_sync_s=0.0, measured_opt_s=0.0, predicted_opt_s=0.0,
    )


def test_policy_aggregates_skip_warmup_and_idle_ranks():
    rows = (
        _row(0, 1.0, 3.0, warmup=True),  # excluded: +200%
        _row(1, 1.0, 1.2, busy_m=(0.8, 0.01), busy_p=(0.88, 0.0)),  # rank 1 idle: not in busy MAPE
        _row(2, 2.0, 1.8, busy_m=(1.0, 1.0), busy_p=(0.9, 1.1)),
    )
    p = PolicyValidation("a", "adaptive", {}, rows)
    assert [s.step for s in p.measured] == [1, 2]
    assert p.step_mape == pytest.approx(15.0)
    assert p.bias_pct == pytest.approx(5.0)
    assert p.busy_mape == pytest.approx(10.0)
    assert busy_mape(rows[1:2]) == pytest.approx(10.0)
    assert p.measured_mean_s == pytest.approx(1.5) and p.predicted_mean_s == pytest.approx(1.5)
    json.dumps(p.to_dict())


# ---------------------------------------------------------------------- one step, no processes
def _summary(plan, batch, wall=1.0, waves=(0.9, 0.8), plan_wait=(0.001, 0.003), digest=None):
    """A two-rank executed step as the runner records it (plan and batch on rank 0)."""
    ranks = tuple(
        StepRecord(
            policy="a", step=0, rank=r, wall_s=wall if r == 0 else wall - 0.1, busy_s=waves[r], comm_s=0.0,
            idle_s=(0.0, 0.05)[r], loss=1.0, tokens=sum(batch), waves=len(plan.waves), layout="x",
            plan_digest=plan.digest() if digest is None else digest, peak_bytes=0, plan_s=(0.01, 0.02)[r],
            waves_s=waves[r], sync_s=(0.003, 0.004)[r], opt_s=0.001, plan_wait_s=plan_wait[r],
            plan=plan.to_dict() if r == 0 else None, seqlens=list(batch) if r == 0 else None,
        )
        for r in range(2)
    )
    return Step(ranks)


def test_compare_step_reads_the_recorded_plan_and_batch_and_checks_the_digest():
    cost = CostModel.from_profile(synthetic_profile(world_size=2, model=TINY), TINY, world_size=2)
    policy = Policy(kind="adaptive", world_size=2, token_budget=256)
    batch = BatchSampler(load_workload(SMALL_WL, global_batch_tokens=600), seed=0).batch(0)
    plan = plan_batch(batch, policy, cost=cost)
    pred = cost.predict(plan, batch)
    row = compare_step(_summary(plan, batch), cost, warmup=False)
    assert row.measured_s == pytest.approx(1.0 - 0.003)  # only the planning the step waited for is excluded
    assert row.predicted_s == pytest.approx(pred.step_time)
    assert row.error_pct == pytest.approx(percent_error(0.997, pred.step_time))
    busy = tuple(sum(w[r] for w in pred.rank_busy) for r in range(2))
    assert row.predicted_busy_s == pytest.approx(busy)
    assert row.measured_busy_s == (0.9, 0.8) and row.measured_sync_s == 0.004 and row.idle_s == 0.05
    assert row.plan_ms == pytest.approx(20.0)
    assert compare_step(_summary(plan, batch), cost, False, include_planning=True).measured_s == 1.0
    with pytest.raises(RuntimeError, match="recorded plan has digest"):
        compare_step(_summary(plan, batch, digest=12345), cost, warmup=False)


# ---------------------------------------------------------------------- which profile
def test_default_profile_prefers_newest_measured_profile_of_this_host(tmp_path):
    base = synthetic_profile(world_size=2)
    here = {"hostname": socket.gethostname()}
    save_profile(replace(base, label="measured", hardware=here, created="2026-01-01", model=replace(base.model, name="tiny")),
                 tmp_path / "old.yaml")
    save_profile(replace(base, label="measured", hardware=here, created="2026-02-01", model=replace(base.model, name="tiny")),
                 tmp_path / "new.yaml")
    save_profile(replace(base, label="measured", hardware={"hostname": "elsewhere"}, created="2027-01-01",
                         model=replace(base.model, name="tiny")), tmp_path / "other-host.yaml")
    assert default_profile_path("tiny", 2, [tmp_path]).name == "new.yaml"
    with pytest.raises(FcpTuneError, match="--profile"):
        default_profile_path("tiny", 4, [tmp_path])  # every profile has 2 ranks, no bundled fallback here
    assert default_profile_path("tiny", 2).name  # the repository's own profiles/ resolve


# ---------------------------------------------------------------------- end to end (2 processes)
@pytest.mark.slow
def test_validate_runs_end_to_end_and_reports_every_step():
    wl = load_workload(SMALL_WL, global_batch_tokens=600)
    pols = (
        ("adaptive", Policy(kind="adaptive", world_size=2, token_budget=256)),
        ("static", Policy(kind="static", degree=2, world_size=2, token_budget=256)),
        ("pow2", Policy(kind="pow2", world_size=2, token_budget=256)),
    )
    rep = validate(pols, wl, TINY, synthetic_profile(world_size=2, model=TINY), steps=3, warmup=1, timeout=120)
    assert rep.world_size == 2 and [p.name for p in rep.policies] == ["adaptive", "static", "pow2"]
    for p in rep.policies:
        assert len(p.steps) == 3 and [s.warmup for s in p.steps] == [True, False, False]
        for s in p.steps:
            assert s.measured_s > 0 and s.predicted_s > 0 and math.isfinite(s.error_pct)
            assert len(s.measured_busy_s) == len(s.predicted_busy_s) == 2
        assert math.isfinite(p.step_mape) and math.isfinite(p.busy_mape)
    assert math.isfinite(rep.step_mape)
    data = json.loads(json.dumps(rep.to_dict()))
    assert len(data["policies"][0]["steps"]) == 3 and "meets_target" in data


@pytest.mark.slow
def test_cli_validate_json(tmp_path):
    prof = tmp_path / "synthetic.yaml"
    save_profile(synthetic_profile(world_size=2, model=TINY), prof)
    model = tmp_path / "model.yaml"
    model.write_text(json.dumps(TINY.to_dict()))
    res = runner.invoke(app, ["validate", "--profile", str(prof), "--model", str(model), "--workload", SMALL_WL,
                              "--global-batch-tokens", "600", "--steps", "2", "--policy", "adaptive",
                              "--compare", "static", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert [p["name"] for p in data["policies"]] == ["adaptive", "static"]
    assert data["profile"] == str(prof) and data["world_size"] == 2
    assert all(len(p["steps"]) == 2 for p in data["policies"])


# ---------------------------------------------------------------------- bad input: one line, exit 2
@pytest.mark.parametrize(
    "args, message",
    [
        (["--profile", "nope.yaml"], "nope.yaml"),
        (["--steps", "2", "--warmup", "2"], "warmup must be in [0, steps)"),
        (["--policy", "static:x"], "integer"),
        (["--compare", "static:5"], "degree"),
        (["--model", "missing-model.yaml"], "missing-model.yaml"),
        (["--workload", "missing.txt"], "missing.txt"),
        (["--workload", "uniform:lo=3000,hi=5000,n=10"], "does not fit"),
    ],
)
def test_cli_bad_input_is_one_line(args, message):
    res = runner.invoke(app, ["validate", *args])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], res.output


# ---------------------------------------------------------------------- the overheads validation added
def _with_overheads(wave_s=0.004, core=2e-6, slope=1e-6):
    prof = synthetic_profile(world_size=2, model=TINY)
    return replace(prof, linear=replace(prof.linear, wave_s=wave_s, core_s_per_token=core, core_slope_s_per_token=slope))


def test_profile_overhead_fields_round_trip_and_default_to_zero(tmp_path):
    from fcp_tune.profile.schema import load_profile

    path = save_profile(_with_overheads(), tmp_path / "p.yaml")
    lin = load_profile(path).linear
    assert (lin.wave_s, lin.core_s_per_token, lin.core_slope_s_per_token) == (0.004, 2e-6, 1e-6)
    plain = save_profile(synthetic_profile(world_size=2, model=TINY), tmp_path / "q.yaml")
    assert "wave_s" not in plain.read_text()  # written only when measured: older files stay byte-identical
    assert load_profile(plain).linear.wave_s == 0.0


def test_cost_model_prices_the_fixed_and_core_overheads():
    base = CostModel.from_profile(synthetic_profile(world_size=2, model=TINY), TINY, world_size=2)
    cm = CostModel.from_profile(_with_overheads(), TINY, world_size=2)
    lens = [300, 120]
    layers = TINY.layers
    assert cm.group_time(lens, 1) - base.group_time(lens, 1) == pytest.approx(0.004 + 420 * layers * 2e-6)
    # at two ranks each holds half the tokens and pays the core cost of a two-rank group
    assert cm.group_time(lens, 2) - base.group_time(lens, 2) == pytest.approx(0.004 + 210 * layers * 3e-6)
    plan = plan_batch([300, 120, 50, 80], Policy(kind="adaptive", world_size=2, token_budget=256), cost=cm)
    assert 0 < cm.predict(plan, [300, 120, 50, 80]).efficiency <= 1  # the fixed cost counts once in the ideal


def test_fit_line_recovers_a_line_and_never_goes_negative():
    from fcp_tune.profile.layer import fit_line

    a, b = fit_line([256, 1024, 2048, 4096], [0.002 + n * 4e-5 for n in (256, 1024, 2048, 4096)])
    assert a == pytest.approx(0.002) and b == pytest.approx(4e-5)
    a, b = fit_line([100, 200], [0.5, 1.5])  # would need a negative intercept: through the origin
    assert a == 0.0 and b > 0


def test_check_exits_nonzero_when_the_target_is_missed(monkeypatch):
    """`validate --check` turns a missed fidelity target into exit status 1 (after printing the report)."""
    import fcp_tune.cli.validate as cli_validate

    class Missed:
        worst_step_mape = 46.4

        def meets(self) -> bool:
            return False

        def to_dict(self) -> dict:
            return {"meets_target": False}

    monkeypatch.setattr(cli_validate, "validate", lambda *a, **k: Missed())
    res = runner.invoke(app, ["validate", "--steps", "2", "--compare", "none", "--json", "--check"])
    assert res.exit_code == 1, res.output
    assert json.loads(res.stdout)["schema"] == "fcp-tune/validate"
    assert "misses" in res.stderr
    res = runner.invoke(app, ["validate", "--steps", "2", "--compare", "none", "--json"])
    assert res.exit_code == 0, res.output  # without --check: the report, exit 0
