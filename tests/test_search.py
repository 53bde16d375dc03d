"""fcp-tune search: encoding, optimality on a brute-forced case, export, resume, bad input."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fcp_tune.cli import app
from fcp_tune.costmodel import CostModel
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.policy import load_policy
from fcp_tune.profile.schema import save_profile
from fcp_tune.profile.synthetic import synthetic_profile
from fcp_tune.search.evaluate import Evaluator
from fcp_tune.search.space import ThresholdSpace
from fcp_tune.search.study import SearchConfig, completed_trials, export_policy, recommend, run_search
from fcp_tune.workload import Workload

runner = CliRunner()
MODEL = ModelConfig(vocab_size=512, hidden=128, layers=2, heads=4, kv_heads=2, ffn_hidden=352, name="t")


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 6),
    st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5),
    st.lists(st.integers(1, 16), min_size=6, max_size=6),
    st.integers(1, 50),
    st.integers(100, 100_000),
)
def test_ordered_encoding_always_gives_valid_policies(ranges, fracs, degs, lo, span):
    space = ThresholdSpace(world_size=16, token_budget=1 << 20, ranges=ranges, min_len=lo, max_len=lo + span)
    bounds = space.boundaries(fracs[: ranges - 1])
    assert all(b2 > b1 for b1, b2 in zip(bounds, bounds[1:]))
    assert all(b >= 1 for b in bounds)
    policy = space.policy(bounds, degs[:ranges])  # Policy validates ordering and degrees
    assert policy.kind == "thresholds"
    # encode/decode keeps the degrees and (for boundaries inside the span) the boundaries
    b2, d2 = space.from_params(space.encode(bounds, degs[:ranges]))
    assert d2 == tuple(degs[:ranges])
    inside = [i for i, b in enumerate(bounds) if b <= space.max_len and (i == 0 or bounds[i - 1] < b)]
    for i in inside:
        assert abs(b2[i] - bounds[i]) <= max(1, bounds[i] // 1000) or bounds[i] > space.max_len


def _workload():
    lens = (60,) * 30 + (200,) * 6 + (900,) * 2
    return Workload(name="twolevel", seqlens=lens, global_batch_tokens=4000, max_len=None, source="test")


def test_search_beats_baselines_and_matches_brute_force():
    prof = synthetic_profile(world_size=4, model=MODEL, beta_Bps=2e8, alpha_s=5e-4)
    wl = _workload()
    cfg = SearchConfig(world_size=4, token_budget=1024, trials=60, ranges=2, batches=3, seed=1)
    result, study, space = run_search(cfg, prof, wl, MODEL)
    cost = CostModel.from_profile(prof, MODEL, world_size=4)
    ev = Evaluator(cost, wl, 4, batches=3, seed=1)
    # brute force: with lengths {60, 200, 900} only the boundary's position between them matters
    best = min(
        ev.step_time(space.policy((b,), (d0, d1)))
        for b, d0, d1 in itertools.product((100, 500), range(1, 5), range(1, 5))
    )
    assert result.score.step_s <= best * (1 + 1e-9)
    baselines = [t.value for t in study.trials if "baseline" in t.user_attrs]
    assert baselines and all(result.score.step_s <= v * (1 + 1e-9) for v in baselines)


def test_export_import_roundtrip(tmp_path):
    prof = synthetic_profile(world_size=2, model=MODEL)
    cfg = SearchConfig(world_size=2, token_budget=1024, trials=8, ranges=3, batches=2, command="fcp-tune search ...")
    result, _, _ = run_search(cfg, prof, _workload(), MODEL)
    path = export_policy(result, tmp_path / "p.yaml")
    back = load_policy(path)
    assert back == result.policy
    meta = back.metadata
    assert meta["search"]["sampler"] == "tpe" and meta["search"]["trials"] == 8
    assert meta["predicted"]["step_s"] == pytest.approx(result.score.step_s)
    assert set(meta["predicted"]["speedup"]) >= {"mcore-dynamic", "mcore_dynamic", "adaptive", "best_static", "megatron"}
    assert meta["command"] == "fcp-tune search ..."


def test_recommendation_names_adaptive_with_the_numbers_when_thresholds_fall_behind():
    assert recommend(1.02, 1.0)["policy"] == "thresholds"
    rec = recommend(1.10, 1.0)
    assert rec["policy"] == "adaptive" and rec["searched_vs_adaptive"] == pytest.approx(0.10)
    assert rec["searched_step_s"] == 1.10 and rec["adaptive_step_s"] == 1.0 and rec["tolerance"] == 0.03
    prof = synthetic_profile(world_size=2, model=MODEL)
    result, _, _ = run_search(SearchConfig(world_size=2, token_budget=1024, trials=4, ranges=2, batches=2), prof,
                              _workload(), MODEL)
    adaptive = next(b.score.step_s for b in result.baselines if b.policy.kind == "adaptive")
    assert result.recommendation == recommend(result.score.step_s, adaptive)
    assert result.to_dict()["recommendation"] == result.recommendation


def _cli_inputs(tmp_path):
    prof = tmp_path / "prof.yaml"
    save_profile(synthetic_profile(world_size=2, model=MODEL), prof)
    wl = tmp_path / "wl.txt"
    wl.write_text("\n".join(str(x) for x in [60] * 30 + [200] * 6 + [900] * 2) + "\n")
    return str(prof), str(wl)


@pytest.mark.slow
def test_exported_policy_runs(tmp_path):
    prof, wl = _cli_inputs(tmp_path)
    out = tmp_path / "strat.yaml"
    res = runner.invoke(app, ["search", "--profile", prof, "--workload", wl, "-N", "2", "-b", "1024",
                              "--trials", "6", "--global-batch-tokens", "2000", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["run", "--policy", str(out), "--workload", wl, "--global-batch-tokens", "2000",
                              "--steps", "2", "--warmup", "0", "--json"])
    assert res.exit_code == 0, res.output
    assert '"kind": "thresholds"' in res.output


@pytest.mark.slow
@pytest.mark.ci  # a real process signalled or killed: CI runs it, a plain local pytest -q does not
def test_resume_after_sigint_loses_no_completed_trial(tmp_path):
    prof, wl = _cli_inputs(tmp_path)
    db = tmp_path / "study.db"
    args = [sys.executable, "-m", "fcp_tune", "search", "--profile", prof, "--workload", wl, "-N", "2", "-b", "1024",
            "--storage", f"sqlite:///{db}", "--study-name", "resume", "--out", str(tmp_path / "o.yaml"),
            "--batches", "2"]  # cheaper trials; what is checked is which trials survive the interrupt
    proc = subprocess.Popen(args + ["--trials", "100000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import optuna

    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if db.exists():
            try:
                done = completed_trials(optuna.load_study(study_name="resume", storage=f"sqlite:///{db}"))
            except Exception:  # noqa: BLE001 - the study may not exist yet
                continue
            if done >= 12:
                break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "interrupted" in err
    study = optuna.load_study(study_name="resume", storage=f"sqlite:///{db}")
    before = {t.number: t.params for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(before) >= 12
    target = len(before) + 5
    res = runner.invoke(app, args[3:] + ["--trials", str(target), "--json"])  # resumed in-process: no 2nd import
    assert res.exit_code == 0, res.output
    study = optuna.load_study(study_name="resume", storage=f"sqlite:///{db}")
    after = {t.number: t.params for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(after) == target
    assert all(after[n] == p for n, p in before.items())


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--trials", "0"], "trials must be a positive integer"),
        (["--world-size", "0"], "world_size must be a positive integer"),
        (["--storage", "sqlite:///no/such/dir/x.db"], "does not exist"),
        (["--storage", "journal:/no/such/dir/x.log"], "does not exist"),
        (["--storage", "bogus"], "expected sqlite:///PATH"),
        (["--sampler", "grid"], "unknown sampler"),
        (["-b", "100", "--max-len", "100000"], "does not fit"),
    ],
)
def test_bad_input(tmp_path, extra, message):
    prof, wl = _cli_inputs(tmp_path)
    base = {"--world-size": "2", "-N": "2", "-b": "1024"}
    args = ["search", "--profile", prof, "--workload", wl, "--trials", "3", "--out", str(tmp_path / "o.yaml")]
    keys = set(extra[::2])
    if not keys & {"--world-size", "-N"}:
        args += ["-N", base["-N"]]
    if "-b" not in keys:
        args += ["-b", base["-b"]]
    res = runner.invoke(app, args + extra)
    assert res.exit_code != 0
    assert "Traceback" not in res.output
    assert message in res.output, res.output


def test_storage_that_is_not_sqlite(tmp_path):
    prof, wl = _cli_inputs(tmp_path)
    bad = tmp_path / "x.db"
    bad.write_text("not a database")
    res = runner.invoke(app, ["search", "--profile", prof, "--workload", wl, "-N", "2", "-b", "1024", "--trials", "2",
                              "--storage", f"sqlite:///{bad}"])
    assert res.exit_code == 2 and "not an SQLite database" in res.output


def test_study_for_another_workload_is_refused(tmp_path):
    prof, wl = _cli_inputs(tmp_path)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    common = ["search", "--profile", prof, "-N", "2", "-b", "1024", "--trials", "2", "--storage", storage,
              "--study-name", "shared", "--out", str(tmp_path / "o.yaml"), "--json"]
    assert runner.invoke(app, common + ["--workload", wl]).exit_code == 0
    other = tmp_path / "other.txt"
    other.write_text("50\n70\n300\n")
    res = runner.invoke(app, common + ["--workload", str(other)])
    assert res.exit_code == 2 and "different search" in res.output and "workload_sha256" in res.output


def test_two_class_seeds_are_feasible_two_degree_tables_at_memory_steps():
    space = ThresholdSpace(world_size=64, token_budget=16384, ranges=5, min_len=20, max_len=131072)
    seeds = space.two_class_params()
    assert seeds
    for label, params in seeds:
        bounds, degrees = space.from_params(params)
        assert space.memory_violation(bounds, degrees) <= 0, label
        policy = space.policy(bounds, degrees)
        assert len(policy.degrees) == 2 and policy.degrees[0] < policy.degrees[1], label
        assert policy.boundaries[0] in (16384, 32768, 65536), label
        assert all(64 % d == 0 for d in policy.degrees), label
    assert ThresholdSpace(64, 16384, 1, 20, 131072).two_class_params() == []
