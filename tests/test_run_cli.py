"""`fcp-tune run`: options, JSON output, bad input, and faults (a rank raising or killed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from typer.testing import CliRunner

from fcp_tune.cli import app
from fcp_tune.executor import RunConfig, run_training
from fcp_tune.launch import RankFailure
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.policy import Policy, save_policy
from fcp_tune.workload import load_workload
from tests.faults import wave_fault

runner = CliRunner()
TINY = ModelConfig(vocab_size=64, hidden=32, layers=1, heads=2, kv_heads=1, ffn_hidden=48, name="t")
SMALL_WL = "uniform:lo=8,hi=200,n=200"


def _cfg(world=2, steps=2):
    wl = load_workload(SMALL_WL, global_batch_tokens=600)
    pols = (
        ("adaptive", Policy(kind="adaptive", world_size=world, token_budget=256)),
        ("static", Policy(kind="static", degree=world, world_size=world, token_budget=256)),
    )
    return RunConfig(pols, wl, TINY, steps=steps, warmup=1)


@pytest.mark.slow
def test_run_interleaves_policies_and_reports():
    report = run_training(_cfg(steps=3), timeout=120)
    assert [r.name for r in report.results] == ["adaptive", "static"]
    for r in report.results:
        assert len(r.steps) == 3 and r.tokens_per_s().median > 0 and r.tokens_per_s("wall").median > 0
        for s in r.steps:
            assert len(s.busy_s) == 2 and s.wall_s > 0 and s.waves >= 1
    # same batch and weights: the first step's loss is the same under every policy
    a, b = (r.steps[0].loss for r in report.results)
    assert abs(a - b) < 1e-5
    # training makes progress on the synthetic data
    assert report.results[0].steps[-1].loss != report.results[0].steps[0].loss
    assert report.communicators >= 1


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["raise", "kill"])
def test_failing_rank_stops_the_run_and_is_named(kind, monkeypatch):
    wave_fault(rank=1, step=1, kind=kind, patch=monkeypatch.setattr)
    t0 = time.monotonic()
    with pytest.raises(RankFailure) as info:
        run_training(_cfg(world=3), timeout=60, collective_timeout=20)
    assert info.value.rank == 1
    assert ("injected fault" in str(info.value)) if kind == "raise" else ("signal 9" in str(info.value))
    assert time.monotonic() - t0 < 60


@pytest.mark.slow
def test_cli_run_json(tmp_path):
    path = tmp_path / "mine.yaml"
    save_policy(Policy(kind="adaptive", world_size=4, token_budget=256), path)
    res = runner.invoke(
        app,
        ["run", "--policy", str(path), "--workload", SMALL_WL,
         "--nproc", "2", "--steps", "2", "--warmup", "0", "--repeats", "2", "--global-batch-tokens", "600",
         "--compare", "static,pow2", "--json"],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["schema"] == "fcp-tune/run" and data["schema_version"] == 2
    assert [p["name"] for p in data["policies"]] == ["mine", "static", "pow2"]
    assert data["world_size"] == 2 and data["repeats"] == 2 and data["compared_by"] == "critical_path"
    for p in data["policies"]:
        assert [(s["round"], s["step"]) for s in p["steps"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
        assert all(s["critical_path_s"] > 0 and s["predicted_s"] > 0 for s in p["steps"])
        assert len(p["seconds_per_round"]["critical_path"]) == 2
        assert set(p["speedup_of_first"]["critical_path"]) == {"median", "min", "max"}
    # model TFLOP/s beside tokens/s: model FLOPs of the measured batches over their busy critical path, per rank
    from fcp_tune.mfu import model_flops
    from fcp_tune.modelcfg import PRESETS

    for p in data["policies"]:
        steps = [s for s in p["steps"] if not s["warmup"]]
        want = sum(model_flops(PRESETS["tiny"], s["seqlens"]) for s in steps) / sum(
            s["critical_path_s"] for s in steps) / 2e12
        assert data["figures"][p["name"]]["tflops_per_gpu"] == pytest.approx(want)
        assert data["figures"][p["name"]]["mfu"] is None  # no profile: the CPU's peak is unknown


@pytest.mark.parametrize(
    "args, message",
    [
        (["--policy", "nope.yaml"], "no such policy file"),
        (["--workload", "missing.txt"], "missing.txt"),
        (["--compare", "static:0"], "degree"),
        (["--compare", "static:9"], "degree"),
        (["--policy", "static:x"], "integer"),
        (["--nproc", "2", "--policy", "pow2", "--compare", "static:3"], "degree"),
    ],
)
def test_cli_bad_input_is_one_line(args, message):
    res = runner.invoke(app, ["run", *args, "--steps", "1"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], res.output


def _processes_marked(marker: str) -> list[int]:
    """Live processes (not this one) whose command line or environment holds ``marker``.

    The launched command carries the marker in its argv (forked ranks share it) and in its
    environment (anything it starts inherits it), so this finds this test's processes only,
    not another run of the same test elsewhere on the machine.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        for part in ("cmdline", "environ"):
            try:
                with open(f"/proc/{entry}/{part}", "rb") as fh:
                    if marker.encode() in fh.read():
                        found.append(int(entry))
                        break
            except OSError:  # gone, or not ours to read
                pass
    return found


@pytest.mark.slow
@pytest.mark.ci  # a real process signalled or killed: CI runs it, a plain local pytest -q does not
def test_cli_subprocess_fault_exits_nonzero_quickly(tmp_path):
    """The launching command itself exits non-zero when a rank dies, leaving no process behind."""
    marker = f"fcp-tune-leftover-check-{uuid.uuid4().hex}"
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from tests.test_run_cli import _cfg\n"
        "from tests.faults import wave_fault\n"
        "from fcp_tune.executor import run_training\n"
        "wave_fault(rank=0, step=0, kind='kill')\n"
        "run_training(_cfg(world=2), timeout=60, collective_timeout=20)\n"
        "# %s\n"
    ) % (os.getcwd(), marker)
    env = {**os.environ, "FCP_TUNE_TEST_MARKER": marker}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90, env=env)
    assert proc.returncode != 0
    assert "rank 0 died" in proc.stderr
    assert time.monotonic() - t0 < 60
    # A process already killed may take a moment to vanish from /proc on a loaded machine;
    # one the launcher left running is still there after the grace period.
    deadline = time.monotonic() + 5.0
    while (leftover := _processes_marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftover == [], f"processes left behind: {leftover}"


def test_processes_marked_finds_a_marked_process():
    """Negative control for the leftover check: a live marked process is found, then not."""
    marker = f"fcp-tune-leftover-check-{uuid.uuid4().hex}"
    child = subprocess.Popen([sys.executable, "-c", f"import time; print('up', flush=True); time.sleep(60)  # {marker}"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "up\n"  # past exec: its command line is the marked one
        assert child.pid in _processes_marked(marker)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert _processes_marked(marker) == []


def test_cli_sequence_longer_than_world_times_budget_fails_before_launch():
    res = runner.invoke(app, ["run", "--workload", "uniform:lo=9000,hi=10000,n=10", "--max-len", "10000", "--steps", "1"])
    assert res.exit_code == 2
    assert "does not fit 2 ranks x 1024 tokens" in res.output
    assert "Traceback" not in res.output
