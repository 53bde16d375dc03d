"""Every command's tables read at 80 columns: no cell cut, every number whole.

Each command runs through typer's CliRunner with its console set to 80 columns. A spy on
:func:`fcp_tune.cli.tables.fit_table` records every table a command prints; each word of
each of its cells (and headers) must appear whole in the output, no line may be wider than
80 cells, and no ellipsis may appear anywhere (a table printed around the shared mechanism
would show one when rich cuts it). ``--wide`` prints one full table instead.
"""

from __future__ import annotations

import re

import pytest
import torch
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from fcp_tune.cli import app, common, tables
from fcp_tune.profile.bundled import bundled_profiles_dir

WIDTH = 80
SMALL_RUN = ["--steps", "2", "--nproc", "2", "--workload", "uniform:lo=64,hi=3000,n=200",
             "--global-batch-tokens", "8192"]
_BORDERS = re.compile(r"[\s│┃]+")


def _words(console: Console, cell) -> list[str]:
    if isinstance(cell, str):
        return console.render_str(cell).plain.split()
    plain = getattr(cell, "plain", None)
    return plain.split() if isinstance(plain, str) else []  # bars and other drawings have no words


def _cell_words(table: Table, console: Console) -> set[str]:
    words: set[str] = set()
    for column in table.columns:
        for cell in [column.header, *column._cells]:
            words.update(_words(console, cell))
    return words


def _run(monkeypatch, args: list[str]) -> tuple[str, list[Table]]:
    """Run ``fcp-tune ARGS`` at 80 columns; returns the output and the tables it printed."""
    torch.set_num_threads(1)
    monkeypatch.setattr(common.console, "width", WIDTH)
    seen: list[Table] = []
    real = tables.fit_table

    def spy(table, width, keys=1, console=None):
        seen.append(table)
        return real(table, width, keys=keys, console=console)

    monkeypatch.setattr(tables, "fit_table", spy)
    result = CliRunner().invoke(app, args, env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    return result.stdout, seen


def _check(out: str, seen: list[Table]) -> None:
    assert seen, "the command printed no table through fcp_tune.cli.tables"
    assert "…" not in out, out
    for line in out.splitlines():
        assert cell_len(line) <= WIDTH, f"line wider than {WIDTH}: {line!r}"
    shown = set(_BORDERS.split(out))
    console = Console(width=WIDTH)
    for table in seen:
        missing = sorted(w for w in _cell_words(table, console) if w not in shown)
        assert not missing, f"cut or missing in {table.title!r}: {missing[:10]}\n{out}"


FAST = {
    "search": ["search", "--trials", "5", "--batches", "2"],
    "simulate": ["simulate", "megatron", "static", "pow2", "adaptive", "--profile", "h100-64-reference",
                 "--workload", "lognormal:n=500", "--world-sizes", "8,64", "--token-budget", "16384",
                 "--batches", "1"],
    "profile": ["profile", "--show", "cpu-epyc-2proc-tiny"],
    "workload": ["workload", "show", "lognormal:n=500"],
}
SLOW = {
    "run": ["run", *SMALL_RUN, "--compare", "static,pow2,megatron", "--repeats", "1"],  # same tables, 1 round
    "validate": ["validate", "--steps", "2", "--compare", "static,pow2"],
    "demo": ["demo", "--nproc", "2"],
}


@pytest.mark.parametrize("name", sorted(FAST))
def test_tables_fit_80_columns(monkeypatch, tmp_path, name):
    monkeypatch.chdir(tmp_path)  # search writes strategies/ here
    _check(*_run(monkeypatch, FAST[name]))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_multiprocess_tables_fit_80_columns(monkeypatch, tmp_path, name):
    monkeypatch.chdir(tmp_path)
    _check(*_run(monkeypatch, SLOW[name]))


def test_report_output_fits_80_columns(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(common.console, "width", WIDTH)
    profile = str(bundled_profiles_dir() / "h100-8x-reference.yaml")
    result = CliRunner().invoke(app, ["report", "--profile", profile, "--workload", "lognormal:n=300",
                                      "-N", "8", "-b", "16384", "--trials", "4", "--batches", "1",
                                      "--out", str(tmp_path / "rep")], env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert all(cell_len(line) <= WIDTH for line in result.stdout.splitlines())


def _wide_table(rows: int = 3) -> Table:
    t = Table(title="a wide table")
    for h in ("policy", "step", "wall s", "tokens per second", "groups per wave", "busy s", "comm s",
              "idle s", "peak MiB", "speedup vs megatron", "speedup vs pow2"):
        t.add_column(h, justify="left" if h == "policy" else "right")
    for i in range(rows):
        t.add_row(f"adaptive-{i}", str(i), "12.345", "1,234,567", "2 2 1 1 | 4 | 1 1 1 1", "0.123-0.456",
                  "0.012-0.034", "0.000-0.300", "12345", "1.23x", "4.56x")
    return t


def test_fit_table_splits_and_keeps_every_word():
    console = Console(width=WIDTH, record=True)
    table = _wide_table()
    pieces = tables.fit_table(table, WIDTH, keys=2, console=console)
    assert len(pieces) >= 2
    for piece in pieces:
        assert [c.header for c in piece.columns[:2]] == ["policy", "step"]  # keys repeated
        console.print(piece)
    out = console.export_text()
    assert "…" not in out and max(cell_len(line) for line in out.splitlines()) <= WIDTH
    shown = set(_BORDERS.split(out))
    assert _cell_words(table, console) <= shown
    # Every non-key column appears in exactly one piece, in order.
    rest = [c.header for p in pieces for c in p.columns[2:]]
    assert rest == [c.header for c in table.columns[2:]]


def test_fit_table_leaves_a_fitting_table_whole():
    t = Table(title="small")
    t.add_column("a")
    t.add_column("b", justify="right")
    t.add_row("x", "1.5")
    assert len(tables.fit_table(t, WIDTH)) == 1
    with pytest.raises(ValueError, match="width"):
        tables.fit_table(t, 0)


def test_wide_prints_one_full_table():
    console = Console(width=WIDTH, record=True)
    tables.print_table(_wide_table(), console, keys=2, wide=True)
    out = console.export_text()
    assert out.count("┏") == 1  # one table
    header = next(line for line in out.splitlines() if "policy" in line)
    assert "speedup vs megatron" in header and cell_len(header) > WIDTH
    assert "…" not in out
