"""``fcp-tune demo``: attention parity across local processes against the float64 reference."""

from __future__ import annotations

import typer
from rich.table import Table

from fcp_tune.attention.parity import TOLERANCE, demo_cases, run_parity
from fcp_tune.cli import app
from fcp_tune.cli.common import cli_errors, console, print_json, status
from fcp_tune.cli.tables import print_table, wide_option


@app.command()
@cli_errors
def demo(
    nproc: int = typer.Option(3, "--nproc", "-n", min=1, max=16, help="Local gloo processes (group size)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    wide: bool = wide_option(),
) -> None:
    """Check cp_attention on NPROC local processes against a dense float64 reference."""
    cases = demo_cases(nproc)
    with status(f"running {len(cases)} parity cases on {nproc} processes"):
        errors = run_parity(cases, nproc)
    rows = []
    for c, e in zip(cases, errors):
        rows.append(
            {
                "scheme": c.scheme, "causal": c.causal, "dtype": c.dtype, "group_size": nproc,
                "seqlens": list(c.seqlens), "out": e.out, "dq": e.dq, "dk": e.dk, "dv": e.dv,
                "tolerance": TOLERANCE[c.dtype], "ok": e.worst <= TOLERANCE[c.dtype],
            }
        )
    ok = all(r["ok"] for r in rows)
    if json_out:
        print_json({"ok": ok, "cases": rows}, "demo")
    else:
        table = Table(title=f"cp_attention vs float64 reference, {nproc} ranks, seqlens {list(cases[0].seqlens)}")
        for col in ("scheme", "causal", "dtype", "out", "dq", "dk", "dv", "tolerance", ""):
            table.add_column(col, justify="right" if col not in ("scheme", "dtype") else "left", no_wrap=True)
        for r in rows:
            table.add_row(
                r["scheme"], str(r["causal"]), r["dtype"],
                *(f"{r[k]:.1e}" for k in ("out", "dq", "dk", "dv", "tolerance")),
                "[green]ok[/]" if r["ok"] else "[red]FAIL[/]",
            )
        print_table(table, console, keys=3, wide=wide)
    console.print("errors: max |x - ref| / max(1, max |ref|), per tensor, max over ranks") if not json_out else None
    if not ok:
        raise typer.Exit(1)
