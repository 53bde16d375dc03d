"""Profile schema round trip and errors, fits, reference profiles, a quick measurement, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fcp_tune.cli import app
from fcp_tune.errors import FcpTuneError
from fcp_tune.modelcfg import PRESETS
from fcp_tune.profile.collectives import bus_factor, fit_alpha_beta
from fcp_tune.profile.flops import attention_fwd_flops
from fcp_tune.profile.reference import fa3_fwd_tflops, reference_profile, write_reference_profiles
from fcp_tune.profile.schema import SCHEMA, Profile, load_profile, save_profile
from fcp_tune.profile.synthetic import synthetic_profile

REPO = Path(__file__).resolve().parents[1]


def _doc(tmp_path: Path) -> tuple[dict, Path]:
    path = tmp_path / "p.yaml"
    save_profile(synthetic_profile(world_size=3), path)
    return yaml.safe_load(path.read_text()), path


def _write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# --- schema ----------------------------------------------------------------------------------


def test_round_trip_and_layout(tmp_path):
    prof = synthetic_profile(world_size=3)
    path = save_profile(prof, tmp_path / "sub" / "p.yaml")
    assert load_profile(path) == prof
    doc = yaml.safe_load(path.read_text())
    assert (doc["schema"], doc["schema_version"]) == (SCHEMA, 1)
    assert "FlashAttention-3" in doc["conventions"]["attention_flops"]
    assert sorted(doc["collectives"]) == sorted(["p2p_ring", "all_gather", "reduce_scatter", "all_to_all", "all_reduce"])
    assert [c["group_size"] for c in doc["collectives"]["all_gather"]] == [2, 3]
    p0 = doc["attention"][0]
    flops = attention_fwd_flops(p0["q_len"], p0["k_len"], p0["causal"], 4, 32)
    assert p0["fwd_tflops"] == pytest.approx(flops / p0["fwd_s"] / 1e12, rel=1e-3)
    s = doc["collectives"]["all_reduce"][0]["samples"][-1]
    assert s["busbw"] == pytest.approx(s["algbw"] * bus_factor("all_reduce", 2), rel=1e-3)
    assert doc["model"]["head_dim"] == 32
    # No temporary file is left behind by the atomic write.
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["p.yaml"]
    # JSON-able too.
    json.dumps(prof.to_dict())


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(schema_version=2), "unsupported schema_version 2"),
        (lambda d: d.update(schema="fcp-tune/policy"), "schema is 'fcp-tune/policy'"),
        (lambda d: d.pop("linear"), "linear: missing field"),
        (lambda d: d["memory"].pop("bytes_per_param"), "memory.bytes_per_param: missing field"),
        (lambda d: d["attention"][3].update(fwd_s=-0.5), "attention[3].fwd_s must be > 0, got -0.5"),
        (lambda d: d["attention"][0].pop("bwd_s"), "attention[0].bwd_s: missing field"),
        (lambda d: d["collectives"]["all_gather"][0]["samples"][1].update(median_s=-1),
         "collectives.all_gather[0].samples[1].median_s must be > 0"),
        (lambda d: d["collectives"]["all_reduce"][1]["fit"].update(beta_Bps=0), "collectives.all_reduce[1].fit.beta_Bps must be > 0"),
        (lambda d: d["collectives"].update(broadcast=[]), "unknown op 'broadcast'"),
        (lambda d: d["collectives"]["p2p_ring"][1].update(group_size=7), "group_size 7 outside [2, world_size 3]"),
        (lambda d: d["attention"].pop(1), "full grid is missing the point"),
        (lambda d: d["attention"].append(dict(d["attention"][-1], k_len=99)), "causal points must be squares"),
        (lambda d: d.update(world_size=0), "world_size must be an integer >= 1"),
        (lambda d: d["model"].update(head_dim=64), "model.head_dim 64 disagrees"),
        (lambda d: d["extrapolation"].update(gpus_per_node="eight") if d.update(
            extrapolation={"gpus_per_node": 8, "inter_node": {"alpha_s": 0, "beta_Bps": 1e9}}) is None else None,
         "extrapolation.gpus_per_node must be an integer"),
    ],
    ids=["version", "schema", "missing-section", "missing-field", "negative-time", "missing-time",
         "negative-sample", "zero-beta", "unknown-op", "group-too-big", "incomplete-grid", "causal-not-square",
         "world-size", "head-dim", "extrapolation"],
)
def test_bad_profiles_name_the_field(tmp_path, edit, message):
    doc, _ = _doc(tmp_path)
    edit(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(FcpTuneError) as info:
        load_profile(path)
    text = str(info.value)
    assert message in text, text
    assert str(path) in text and "\n" not in text


def test_missing_file_and_malformed_yaml(tmp_path):
    with pytest.raises(FcpTuneError, match="no such file"):
        load_profile(tmp_path / "absent.yaml")
    bad = tmp_path / "m.yaml"
    bad.write_text("schema: [unclosed\n")
    with pytest.raises(FcpTuneError, match="malformed YAML"):
        load_profile(bad)


# --- fits and conventions --------------------------------------------------------------------


def test_fit_is_exact_on_alpha_beta_data():
    sizes = np.array([4096, 65536, 1 << 20, 16 << 20, 64 << 20], dtype=float)
    for alpha, beta in [(25e-6, 4.5e11), (0.0, 2e9), (3e-3, 1e8)]:
        a, b = fit_alpha_beta(sizes, alpha + sizes / beta)
        assert a == pytest.approx(alpha, abs=1e-12, rel=1e-6)
        assert b == pytest.approx(beta, rel=1e-6)


def test_fit_is_non_negative():
    a, b = fit_alpha_beta([1000, 2000, 3000], [1e-6, 3e-6, 5e-6])  # extrapolates to a negative intercept
    assert a == 0.0 and b > 0
    a, b = fit_alpha_beta([1000, 2000, 3000], [3e-3, 2e-3, 1e-3])  # slower for smaller messages: noise
    assert a == pytest.approx(2e-3) and b >= 1e17
    a, b = fit_alpha_beta([4096], [1e-4])
    assert a == pytest.approx(1e-4) and b >= 1e17


def test_bus_factors():
    assert bus_factor("all_reduce", 8) == pytest.approx(2 * 7 / 8)
    assert bus_factor("all_gather", 4) == pytest.approx(3 / 4)
    assert bus_factor("p2p_ring", 5) == 1.0
    with pytest.raises(ValueError, match="unknown collective"):
        bus_factor("broadcast", 2)


# --- reference profiles ----------------------------------------------------------------------


def test_reference_profiles_are_reproducible_and_bundled(tmp_path):
    paths = write_reference_profiles(tmp_path)
    for p in paths:
        bundled = REPO / "profiles" / p.name
        assert bundled.is_file(), f"{bundled} missing: run python -m fcp_tune.profile.reference"
        assert yaml.safe_load(bundled.read_text()) == yaml.safe_load(p.read_text()), f"{bundled} is stale"
    one, eight = load_profile(paths[0]), load_profile(paths[1])
    assert one.label == eight.label == "reference (derived from public figures, not measured)"
    assert (one.world_size, eight.world_size) == (8, 64)
    assert one.extrapolation is None and eight.extrapolation.gpus_per_node == 8
    assert one.model == PRESETS["llama3-8b"]
    assert any("FlashAttention-3" in s for s in one.sources)


def test_reference_attention_follows_the_fa3_table():
    assert fa3_fwd_tflops(4096) == 638.0 and fa3_fwd_tflops(65536) == 648.0
    assert 565.0 < fa3_fwd_tflops(1500) < 625.0
    assert fa3_fwd_tflops(64) < fa3_fwd_tflops(256) < fa3_fwd_tflops(512) == 467.0
    prof = reference_profile(1)
    m = prof.model
    p = next(p for p in prof.attention if (p.q_len, p.k_len, p.causal) == (8192, 8192, False))
    assert attention_fwd_flops(8192, 8192, False, m.heads, m.head_dim) / p.fwd_s / 1e12 == pytest.approx(646.0)


# --- measurement and CLI ---------------------------------------------------------------------


@pytest.mark.slow
def test_quick_profile_on_two_processes(tmp_path):
    """A real measurement: 2 gloo processes, a 2-length grid, 2 message sizes (a few seconds)."""
    from fcp_tune.profile.measure import ProfileSettings, measure_profile

    events = []
    settings = ProfileSettings(PRESETS["tiny"], (64, 128), (4096, 65536), warmup=1, repeats=2, linear_tokens=256)
    prof = measure_profile(2, settings=settings, command="test", on_event=events.append)
    assert prof.label == "measured" and prof.world_size == 2 and prof.backend == "gloo"
    assert len(prof.attention) == 4 + 2
    assert all(p.fwd_s > 0 and p.bwd_s > 0 for p in prof.attention)
    assert {(c.op, c.group_size) for c in prof.collectives} == {(op, 2) for op in
                                                                ("p2p_ring", "all_gather", "reduce_scatter", "all_to_all", "all_reduce")}
    for c in prof.collectives:
        assert [s.bytes for s in c.samples] == [4096, 65536]
        assert all(s.max_s >= s.median_s > 0 for s in c.samples)
        assert c.fit.alpha_s >= 0 and c.fit.beta_Bps > 0
    assert prof.linear.seconds_per_token > 0 and prof.memory.activation_bytes_per_token_per_layer > 0
    assert "nvml" in prof.hardware
    stages = [e[1] for e in events if e[0] == "stage"]
    assert stages[0].startswith("attention warm-up") and stages[-1].startswith("collectives")
    done: list[list[int]] = []  # [total, advances] per stage: progress bars end full
    for e in events:
        if e[0] == "stage":
            done.append([e[2], 0])
        else:
            done[-1][1] += 1
    assert all(total == n for total, n in done), done
    assert done[-1][0] == 5 * 2  # 5 collectives x 2 message sizes at group size 2
    path = save_profile(prof, tmp_path / "m.yaml")
    assert load_profile(path) == prof


@pytest.mark.slow
def test_cli_quick_profile_writes_json_and_yaml(tmp_path):
    out = tmp_path / "cpu.yaml"
    result = CliRunner().invoke(app, ["profile", "--quick", "--max-len", "128", "--nproc", "2", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["path"] == str(out) and data["schema"] == SCHEMA
    prof = load_profile(out)
    assert sorted({p.q_len for p in prof.attention}) == [64, 128]
    assert isinstance(prof, Profile) and prof.world_size == 2


@pytest.mark.parametrize("content", [None, "a: [unclosed\n", "hidden: -3\n"], ids=["missing", "malformed", "invalid"])
def test_cli_bad_model_file_is_one_line_exit_2(tmp_path, content):
    path = tmp_path / "model.yaml"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(app, ["profile", "--model", str(path), "--out", str(tmp_path / "x.yaml")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    err = result.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x.yaml").exists()


def test_cli_rejects_bad_nproc():
    result = CliRunner().invoke(app, ["profile", "--nproc", "0"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_profile_values_are_finite():
    for prof in (reference_profile(1), reference_profile(8), synthetic_profile()):
        for p in prof.attention:
            assert math.isfinite(p.fwd_s) and math.isfinite(p.bwd_s)


def test_every_bundled_profile_loads_and_predicts():
    from fcp_tune.costmodel import CostModel

    paths = sorted((REPO / "profiles").glob("*.yaml"))
    assert any(p.name.startswith("cpu-") for p in paths) and len(paths) >= 3
    for path in paths:
        prof = load_profile(path)
        for scheme in ("allgather", "ring"):
            cm = CostModel.from_profile(prof, prof.model, scheme)
            times = [cm.group_time([n], prof.world_size) for n in (512, 4096, 32768)]
            assert all(math.isfinite(t) and t > 0 for t in times) and times == sorted(times), path


def test_profiler_times_the_backward_the_schemes_run(monkeypatch):
    """The attention grid times ``accumulate_backward`` (what every scheme calls), whose
    gradients equal the packed ``block_backward``'s (float64, a block and a causal square)."""
    import torch

    from fcp_tune.attention import kernels
    from fcp_tune.profile import measure

    g = torch.Generator().manual_seed(0)
    q, k, v, dout = (torch.randn(n, h, 8, generator=g, dtype=torch.float64) for n, h in ((6, 4), (9, 2), (9, 2), (6, 4)))
    scale = kernels.default_scale(8)
    for qk, causal in (((q, k, v), False), ((q, k[:6], v[:6]), True)):
        qr, kr = [(0, 6)], [(0, qk[1].shape[0])]
        out, lse = kernels.block_forward(*qk, qr, kr, causal, scale)
        call = kernels.bound_backward(dout, *qk, out, lse, qr, kr, causal, scale)
        call()
        want = kernels.block_backward(dout, *qk, out, lse, qr, kr, causal, scale)
        for got, ref in zip(call.args[0], want):
            torch.testing.assert_close(got, ref.to(got.dtype), rtol=0, atol=1e-12)

    calls = []
    real = kernels.accumulate_backward

    def spy(*args):
        calls.append(args[7:10])  # q_ranges, k_ranges, causal
        return real(*args)

    monkeypatch.setattr(kernels, "accumulate_backward", spy)
    points = measure.measure_attention(PRESETS["tiny"], (8, 16), torch.device("cpu"), 1, 1)
    assert len(points) == 2 * 2 + 2  # every q x k pair and each causal square
    timed = {(qr[0][1], kr[0][1], causal) for qr, kr, causal in calls}
    assert timed == {(ql, kl, c) for ql, kl, c, _, _ in points}
