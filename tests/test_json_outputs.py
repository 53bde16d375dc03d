"""One behaviour across commands: ``--json`` is one object with ``schema`` and ``schema_version``
on stdout, and progress never reaches stdout when stdout is not a terminal.

Each command runs in-process through typer's CliRunner, which keeps stdout and stderr apart
and gives neither a terminal, as ``fcp-tune search --json > out.json`` would; one command also
runs as a real subprocess with both streams piped, to check the same holds outside the runner
(a subprocess costs 2-3 s of imports, so only one does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fcp_tune.cli import app
from fcp_tune.cli.common import json_document

ROOT = Path(__file__).resolve().parent.parent
PROGRESS_WORDS = ("searching", "training on", "simulating", "scoring the policy", "writing the report")


def _fcp(args: list[str], cwd: Path, monkeypatch) -> tuple[int, str, str]:
    """``fcp-tune ARGS`` in-process, in ``cwd``; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    res = CliRunner().invoke(app, args)
    return res.exit_code, res.stdout, res.stderr


def _check_document(stdout: str) -> dict:
    data = json.loads(stdout)  # stdout is the document and nothing else: no progress, no notes
    assert isinstance(data, dict)
    assert data["schema"].startswith("fcp-tune/") and isinstance(data["schema_version"], int)
    return data


def _json(args: list[str], cwd: Path, monkeypatch) -> dict:
    code, out, err = _fcp(args + ["--json"], cwd, monkeypatch)
    assert code == 0, err[-2000:]
    return _check_document(out)


def test_json_document_names_its_schema_and_keeps_an_existing_one():
    assert json_document({"a": 1}, "x") == {"schema": "fcp-tune/x", "schema_version": 1, "a": 1}
    own = {"schema": "fcp-tune/profile", "schema_version": 1, "b": 2}
    assert json_document(own, "profile", 3) == own
    with pytest.raises(TypeError, match="object"):
        json_document([1, 2], "x")  # type: ignore[arg-type]


def test_planning_commands_json(tmp_path, monkeypatch):
    profile = str(ROOT / "profiles" / "cpu-epyc-2proc-tiny.yaml")
    shown = _json(["workload", "show", "uniform:lo=8,hi=64,n=50"], tmp_path, monkeypatch)
    assert shown["schema"] == "fcp-tune/workload"
    assert _json(["profile", "--show", profile], tmp_path, monkeypatch)["schema"] == "fcp-tune/profile"
    sim = _json(["simulate", "adaptive", "megatron", "-N", "2,4", "--batches", "1"], tmp_path, monkeypatch)
    assert sim["schema"] == "fcp-tune/simulate" and {r["world_size"] for r in sim["rows"]} == {2, 4}
    search = _json(["search", "--trials", "4", "--batches", "2", "--out", "p.yaml", "--storage", "sqlite:///st.db"],
                   tmp_path, monkeypatch)
    assert search["schema"] == "fcp-tune/search" and search["recommendation"]["policy"] in ("thresholds", "adaptive")
    assert "advice" in search
    report = _json(["report", "--policy", "p.yaml", "--batches", "2", "--out", "rep"], tmp_path, monkeypatch)
    assert report["schema"] == "fcp-tune/report" and (tmp_path / "rep" / "report.md").is_file()
    stored = _json(["report", "--storage", "sqlite:///st.db", "--batches", "2", "--out", "rep2"], tmp_path, monkeypatch)
    assert stored["inputs"]["trials"] == 4  # the stored study, reported without searching again


def test_progress_stays_off_stdout_without_json(tmp_path, monkeypatch):
    for args in (["search", "--trials", "3", "--batches", "1", "--out", "q.yaml"],
                 ["simulate", "adaptive", "-N", "2", "--batches", "1"],
                 ["report", "--policy", "q.yaml", "--batches", "1", "--out", "rep"]):
        code, out, err = _fcp(args, tmp_path, monkeypatch)
        assert code == 0, err[-2000:]
        assert not any(w in out for w in PROGRESS_WORDS), (args, out[:500])


@pytest.mark.slow
def test_executor_commands_json(tmp_path, monkeypatch):
    run = _json(["run", "--steps", "2", "--repeats", "1", "--compare", "none"], tmp_path, monkeypatch)
    assert run["schema"] == "fcp-tune/run" and [p["name"] for p in run["policies"]] == ["adaptive"]
    val = _json(["validate", "--steps", "2", "--compare", "none"], tmp_path, monkeypatch)
    assert val["schema"] == "fcp-tune/validate"
    demo = _json(["demo", "--nproc", "2"], tmp_path, monkeypatch)
    assert demo["schema"] == "fcp-tune/demo" and demo["ok"] is True
    code, out, _ = _fcp(["run", "--steps", "1", "--compare", "none", "--repeats", "1"], tmp_path, monkeypatch)
    assert code == 0 and "training on" not in out


def test_piped_subprocess_gets_only_the_document_on_stdout(tmp_path):
    """The same outside the runner: a real process, both streams piped, as in ``> out.json``."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "fcp_tune", "simulate", "adaptive", "megatron", "-N", "2",
                           "--batches", "1", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _check_document(proc.stdout)["schema"] == "fcp-tune/simulate"
    assert not any(w in proc.stdout for w in PROGRESS_WORDS)
