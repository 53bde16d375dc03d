"""One behaviour across commands: ``--json`` is one object with ``schema`` and ``schema_version``
on stdout, and progress never reaches stdout when stdout is not a terminal.

Each command runs as a subprocess with stdout and stderr piped (not terminals), as in
``fcp-tune search --json > out.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fcp_tune.cli.common import json_document

ROOT = Path(__file__).resolve().parent.parent
PROGRESS_WORDS = ("searching", "training on", "simulating", "scoring the policy", "writing the report")


def _fcp(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "fcp_tune", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def _json(args: list[str], cwd: Path) -> dict:
    proc = _fcp(args + ["--json"], cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)  # stdout is the document and nothing else: no progress, no notes
    assert isinstance(data, dict)
    assert data["schema"].startswith("fcp-tune/") and isinstance(data["schema_version"], int)
    return data


def test_json_document_names_its_schema_and_keeps_an_existing_one():
    assert json_document({"a": 1}, "x") == {"schema": "fcp-tune/x", "schema_version": 1, "a": 1}
    own = {"schema": "fcp-tune/profile", "schema_version": 1, "b": 2}
    assert json_document(own, "profile", 3) == own
    with pytest.raises(TypeError, match="object"):
        json_document([1, 2], "x")  # type: ignore[arg-type]


@pytest.mark.slow
def test_planning_commands_json(tmp_path):
    profile = str(ROOT / "profiles" / "cpu-epyc-2proc-tiny.yaml")
    assert _json(["workload", "show", "uniform:lo=8,hi=64,n=50"], tmp_path)["schema"] == "fcp-tune/workload"
    assert _json(["profile", "--show", profile], tmp_path)["schema"] == "fcp-tune/profile"
    sim = _json(["simulate", "adaptive", "megatron", "-N", "2,4", "--batches", "1"], tmp_path)
    assert sim["schema"] == "fcp-tune/simulate" and {r["world_size"] for r in sim["rows"]} == {2, 4}
    search = _json(["search", "--trials", "4", "--batches", "2", "--out", "p.yaml", "--storage", "sqlite:///st.db"],
                   tmp_path)
    assert search["schema"] == "fcp-tune/search" and search["recommendation"]["policy"] in ("thresholds", "adaptive")
    assert "advice" in search
    report = _json(["report", "--policy", "p.yaml", "--batches", "2", "--out", "rep"], tmp_path)
    assert report["schema"] == "fcp-tune/report" and (tmp_path / "rep" / "report.md").is_file()
    stored = _json(["report", "--storage", "sqlite:///st.db", "--batches", "2", "--out", "rep2"], tmp_path)
    assert stored["inputs"]["trials"] == 4  # the stored study, reported without searching again


@pytest.mark.slow
def test_progress_stays_off_stdout_without_json(tmp_path):
    for args in (["search", "--trials", "3", "--batches", "1", "--out", "q.yaml"],
                 ["simulate", "adaptive", "-N", "2", "--batches", "1"],
                 ["report", "--policy", "q.yaml", "--batches", "1", "--out", "rep"]):
        proc = _fcp(args, tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert not any(w in proc.stdout for w in PROGRESS_WORDS), (args, proc.stdout[:500])


@pytest.mark.slow
def test_executor_commands_json(tmp_path):
    run = _json(["run", "--steps", "2", "--repeats", "1", "--compare", "none"], tmp_path)
    assert run["schema"] == "fcp-tune/run" and [p["name"] for p in run["policies"]] == ["adaptive"]
    val = _json(["validate", "--steps", "2", "--compare", "none"], tmp_path)
    assert val["schema"] == "fcp-tune/validate"
    demo = _json(["demo", "--nproc", "2"], tmp_path)
    assert demo["schema"] == "fcp-tune/demo" and demo["ok"] is True
    proc = _fcp(["run", "--steps", "1", "--compare", "none", "--repeats", "1"], tmp_path)
    assert proc.returncode == 0 and "training on" not in proc.stdout
