"""Failures keep their cause: one line on stderr, the failing rank's traceback in a named log."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from typer.testing import CliRunner

from fcp_tune.cli.common import cli_errors
from fcp_tune.launch import RankFailure

app = typer.Typer()


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose")) -> None:  # as fcp_tune.cli's root
    pass


@app.command()
@cli_errors
def boom(kind: str = "rank") -> None:
    if kind == "rank":
        raise RankFailure(1, "rank 1 failed: ValueError: bad shard", details="Traceback (most recent call last):\n"
                          "  File \"step.py\", line 3, in deep\nValueError: bad shard\n")
    if kind == "runtime":
        raise RuntimeError("NCCL error: unhandled system error")
    if kind == "type":
        {}["missing"] += 1  # a bug: KeyError, no handler written for it
    if kind == "overflow":
        raise OverflowError("int too large to convert to float")
    raise ValueError("field 'x' must be > 0")


def _run(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_rank_failure_is_one_line_naming_a_log_with_the_ranks_traceback():
    code, out = _run("boom")
    assert code == 2 and len(out.strip().splitlines()) == 1 and "Traceback" not in out
    m = re.search(r"error: rank 1 failed: ValueError: bad shard \(traceback: (\S+\.log)\)", out)
    assert m, out
    log = Path(m.group(1)).read_text()
    assert "line 3, in deep" in log and "rank 1 failed" in log


def test_verbose_prints_the_traceback_and_other_runtime_errors_keep_theirs():
    code, out = _run("--verbose", "boom")
    assert code == 2 and "line 3, in deep" in out and "error: rank 1 failed" in out
    code, out = _run("boom", "--kind", "runtime")
    m = re.search(r"error: NCCL error: unhandled system error \(traceback: (\S+\.log)\)", out)
    assert code == 2 and m and "RuntimeError: NCCL error" in Path(m.group(1)).read_text()


def test_bad_input_stays_a_plain_one_line_error():
    code, out = _run("boom", "--kind", "value")
    assert code == 2 and out.strip() == "error: field 'x' must be > 0"


def test_unexpected_exceptions_are_one_line_naming_a_private_log():
    for kind, name in (("type", "KeyError"), ("overflow", "OverflowError")):
        code, out = _run("boom", "--kind", kind)
        lines = out.strip().splitlines()
        m = re.fullmatch(rf"error: internal error: {name}: .* \(traceback: (\S+\.log)\)", lines[0])
        assert code == 1 and len(lines) == 1 and "Traceback" not in out and m, out
        log = Path(m.group(1))
        assert (log.stat().st_mode & 0o777) == 0o600 and (log.parent.stat().st_mode & 0o777) == 0o700
        assert f"{name}" in log.read_text() and "Traceback (most recent call last)" in log.read_text()
