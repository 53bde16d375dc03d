"""Help at 80 columns: readable metavars, nothing cut, every option explained."""

from __future__ import annotations

import inspect
import re

import pytest
import typer
from typer.testing import CliRunner

from fcp_tune.cli import app

runner = CliRunner()
COMMANDS = (["demo"], ["workload", "show"], ["profile"], ["run"], ["validate"], ["search"], ["simulate"], ["report"])


def _callbacks():
    infos = list(app.registered_commands)
    infos += [c for g in app.registered_groups for c in g.typer_instance.registered_commands]
    return [i.callback for i in infos if i.callback is not None]


def test_every_option_has_help_text():
    missing = [f"{fn.__name__} {name}" for fn in _callbacks() for name, p in inspect.signature(fn).parameters.items()
               if isinstance(p.default, (typer.models.OptionInfo, typer.models.ArgumentInfo)) and not p.default.help]
    assert missing == []


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_fits_80_columns_with_readable_metavars(command):
    res = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"}, terminal_width=80)
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if "--help" not in line]  # typer's own help flag
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert "…" not in res.output  # no default or help text cut
    options = [line for line in lines if re.search(r"│ +--", line)]
    assert options and not [line for line in options if re.search(r"<(int|str|float|bool)", line)]
    assert "[default:" in res.output or command == ["demo"]


def test_a_missing_optional_extra_is_one_line_naming_it(monkeypatch, tmp_path):
    """`search --plots` without matplotlib: one error line naming the `plots` extra, before any work."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    res = runner.invoke(app, ["search", "--trials", "1", "--plots", str(tmp_path / "plots"),
                              "--out", str(tmp_path / "p.yaml")])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "fcp-tune[plots]" in lines[0] and "Traceback" not in res.output
    assert not (tmp_path / "p.yaml").exists()
