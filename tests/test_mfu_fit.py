"""MFU against hand-computed values; predicted memory over the device is flagged and rejected (CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fcp_tune import mfu
from fcp_tune.cli import app
from fcp_tune.errors import FcpTuneError
from fcp_tune.memory import GIB, max_token_budget, over_device, state_bytes, activation_bytes
from fcp_tune.modelcfg import ModelConfig, PRESETS
from fcp_tune.scale import realistic_global_batch_tokens, resolve_token_budget

REPO = Path(__file__).resolve().parents[1]
H100 = REPO / "profiles" / "h100-64-reference.yaml"
# h = 8, 2 layers, V = 100, k = 4, f = 16: matmul weights per layer 2h^2 + 2hk + 3hf = 128 + 64 + 384 = 576,
# plus the LM head V h = 800: 2 x 576 + 800 = 1952 matmul parameters, 6 x 1952 = 11712 FLOPs per token.
SMALL = ModelConfig(vocab_size=100, hidden=8, layers=2, heads=2, kv_heads=1, ffn_hidden=16, dtype="bfloat16")


def test_model_flops_one_sequence_by_hand():
    # 10 tokens: 11712 x 10 + causal attention 6 x layers x h x L^2 = 6 x 2 x 8 x 100
    assert mfu.model_flops(SMALL, [10]) == pytest.approx(117120 + 9600)


def test_model_flops_packed_batch_counts_attention_per_sequence():
    # 4 + 6 tokens: attention 6 x 2 x 8 x (16 + 36) = 4992, not (4 + 6)^2 = 100 -> 9600
    assert mfu.model_flops(SMALL, [4, 6]) == pytest.approx(117120 + 4992)
    assert mfu.model_flops(SMALL, [4, 6]) < mfu.model_flops(SMALL, [10])


def test_utilisation_against_the_datasheet_peak():
    hw = {"gpu": "NVIDIA H100 SXM5 80GB HBM3"}
    tflops, util = mfu.utilisation(SMALL, 989.4e12 * 4 * 0.5, 1.0, 4, hw)  # half the peak on 4 GPUs
    assert tflops == pytest.approx(989.4 * 0.5) and util == pytest.approx(0.5)
    tp = SMALL.with_training(tensor_parallel=2)  # 4 ranks of 2 GPUs: 8 GPUs share the FLOPs
    assert mfu.utilisation(tp, 989.4e12 * 4 * 0.5, 1.0, 4, hw)[1] == pytest.approx(0.25)
    assert mfu.utilisation(SMALL, 1e12, 1.0, 1, {"cpu": "x"})[1] is None  # unknown peak: TFLOP/s only


def test_budget_auto_and_over_device_message():
    llama = PRESETS["llama3-8b"]
    dev = 80 * GIB
    b = max_token_budget(llama, 64, dev)
    assert b % 256 == 0
    assert state_bytes(llama, 64) + activation_bytes(llama, b) <= 0.9 * dev
    assert state_bytes(llama, 64) + activation_bytes(llama, b + 256) > 0.9 * dev
    with pytest.raises(ValueError, match="no token budget fits"):
        max_token_budget(llama.with_training(sharding="none"), 64, dev)  # 18 B/param x 8B > 72 GiB
    assert over_device([10 * GIB, 90 * GIB], dev) == "rank 1: predicted peak 90.0 GiB exceeds the device's 80.0 GiB"
    assert over_device([10 * GIB], None) is None
    assert resolve_token_budget("auto", llama, 64, {"gpu_memory_bytes": dev}, 0) == b
    with pytest.raises(FcpTuneError, match="needs the device's memory"):
        resolve_token_budget("auto", llama, 64, {}, 0)


def test_realistic_global_batch_rule():
    assert realistic_global_batch_tokens(64, 16384) == 4 * 2**20
    assert realistic_global_batch_tokens(1024, 4096) == 16 * 2**20
    assert realistic_global_batch_tokens(1024, 16384) == 2 * 1024 * 16384  # two micro-batches per replica


def _model_file(tmp_path: Path, **training) -> str:
    d = PRESETS["llama3-8b"].to_dict()
    d["training"] = {**PRESETS["llama3-8b"].training.__dict__, **training}
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(d))
    return str(path)


def test_simulate_flags_a_plan_over_the_device(tmp_path):
    wl = "lognormal:median=2048,sigma=0.5,max=8192,n=200"
    args = ["simulate", "static:8", "--profile", str(H100), "-w", wl, "-N", "8", "-b", "8192", "--batches", "1",
            "--global-batch-tokens", "65536", "--json"]
    fits = CliRunner().invoke(app, args)
    assert fits.exit_code == 0, fits.output
    assert all(r["fits"] for r in json.loads(fits.stdout)["rows"])
    over = CliRunner().invoke(app, args + ["--model", _model_file(tmp_path, sharding="none", recompute="none")])
    assert over.exit_code == 0, over.output
    rows = json.loads(over.stdout)["rows"]
    assert rows and not any(r["fits"] for r in rows) and all(r["peak_memory_gib"] > r["device_memory_gib"] for r in rows)
    table = CliRunner().invoke(app, args[:-1] + ["--model", _model_file(tmp_path, sharding="none", recompute="none")])
    text = " ".join(table.output.split())
    assert "exceeds the device's 80.0 GiB: not a result" in text and "static:8: rank " in text
    assert rows[0]["over_device"].startswith("rank ") and "predicted peak" in rows[0]["over_device"]


def test_search_rejects_trials_over_the_device(tmp_path):
    wl = "lognormal:median=2048,sigma=0.5,max=8192,n=200"
    base = ["search", "--profile", str(H100), "-w", wl, "-N", "8", "-b", "8192", "--trials", "3", "--batches", "1",
            "--ranges", "2", "--global-batch-tokens", "65536", "--out", str(tmp_path / "p.yaml"), "--json"]
    ok = CliRunner().invoke(app, base)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["predicted"]["fits"] is True
    bad = CliRunner().invoke(app, base + ["--model", _model_file(tmp_path, sharding="none", recompute="none")])
    assert bad.exit_code == 2
    out = " ".join(bad.output.split())
    assert "no feasible trial" in out and "device's memory" in out
    assert "the fastest: rank " in out and "exceeds the device's 80.0 GiB" in out  # names the rank and both GiB
