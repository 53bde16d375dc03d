"""fcp-tune report: the Markdown page, its JSON twin and the PNGs, with a small search."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from fcp_tune.cli import app
from fcp_tune.errors import FcpTuneError
from fcp_tune import report as report_mod

runner = CliRunner()
PROFILE = "h100-8x-reference"  # a bundled profile, by name (a path works too: every other command test uses one)


def test_report_writes_markdown_json_and_pngs(tmp_path):
    out = tmp_path / "rep"
    res = runner.invoke(app, [
        "report", "--profile", PROFILE, "--workload", "workloads/python-stdlib.yaml", "-N", "8", "-b", "16384",
        "--model", "llama3-8b", "--global-batch-tokens", "131072", "--trials", "6", "--batches", "2",
        "--out", str(out), "--json",
    ])
    assert res.exit_code == 0, res.output
    files = {p.name for p in out.iterdir()}
    assert {"report.md", "report.json", "histogram.png", "step_times.png"} <= files
    for png in ("histogram.png", "step_times.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((out / "report.json").read_text())
    assert doc["schema"] == "fcp-tune/report" and doc["schema_version"] == 1
    names = [r["name"] for r in doc["rows"]]
    assert names[0] == "searched" and "adaptive" in names and "mcore-dynamic" in names
    assert doc["references"]["megatron"].startswith("megatron:") and doc["references"]["best_static"] in names
    for row in doc["rows"]:
        assert 0 < row["efficiency"] <= 1.0 + 1e-9
        assert set(row["speedups"]) == {"megatron", "megatron_smallest", "mcore_dynamic", "best_static"}
        assert row["tflops_per_gpu"] > 0 and "mfu" in row and "fits" in row
    ref = next(r for r in doc["rows"] if r["name"] == doc["references"]["megatron"])
    assert ref["speedups"]["megatron"] == pytest.approx(1.0)
    md = (out / "report.md").read_text()
    assert md.startswith("<!-- fcp-tune/report schema_version 1 -->")
    assert "| policy | what | step s" in md and "vs megatron" in md and "vs best static" in md
    assert "![histogram.png](histogram.png)" in md
    searched = doc["rows"][0]
    assert f"| searched | searched thresholds policy (this report) | {searched['step_s']:.4g} |" in md


def test_missing_matplotlib_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    with pytest.raises(FcpTuneError, match=r"pip install 'fcp-tune\[plots\]'"):
        report_mod._pyplot()


def test_bad_input_is_one_line(tmp_path):
    res = runner.invoke(app, ["report", "--profile", str(tmp_path / "none.yaml"), "--workload", "lognormal",
                              "-N", "8", "-b", "1024", "--out", str(tmp_path / "r")])
    assert res.exit_code != 0 and "Traceback" not in res.output and "error" in res.output
