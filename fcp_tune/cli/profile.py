"""``fcp-tune profile``: measure this machine into a versioned profile YAML (see docs/PROFILES.md)."""

from __future__ import annotations

import datetime as _dt
import os
import re
import shlex
import socket
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from fcp_tune.cli import app
from fcp_tune.cli.common import cli_errors, console, print_json, progress_bar
from fcp_tune.cli.tables import print_table, wide_option
from fcp_tune.fileio import check_output_path


def default_output(hardware: dict) -> Path:
    """``profiles/<hostname, or the CPU model>-<date>.yaml``."""
    name = hardware.get("hostname") or (hardware.get("cpu") or {}).get("model") or "cpu"
    slug = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-") or "cpu"
    return Path("profiles") / f"{slug}-{_dt.date.today().isoformat()}.yaml"


def _summary(profile, title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    best = max(profile.to_dict()["attention"], key=lambda p: p["fwd_tflops"])
    table.add_row("label", profile.label)
    table.add_row("world", f"{profile.world_size} x {profile.backend}")
    table.add_row("model", f"{profile.model.name}: {profile.model.heads} heads, {profile.model.kv_heads} kv, "
                  f"head_dim {profile.model.head_dim}, {profile.model.dtype}")
    table.add_row("attention", f"{len(profile.attention)} blocks, best fwd {best['fwd_tflops'] * 1e3:.1f} GFLOP/s "
                  f"({best['q_len']} x {best['k_len']}{' causal' if best['causal'] else ''})")
    table.add_row("token-linear", f"{profile.linear.seconds_per_token * 1e6:.2f} us/token "
                  f"({profile.linear.flops_per_s / 1e9:.1f} GFLOP/s)")
    for c in profile.collectives:
        if c.group_size == profile.world_size:
            table.add_row(c.op, f"{c.group_size} ranks: alpha {c.fit.alpha_s * 1e6:.1f} us, "
                          f"beta {c.fit.beta_Bps / 1e9:.3g} GB/s")
    return table


def nccl_tables(profile) -> list[Table]:
    """The profile's collective samples as nccl-tests prints them: one table per collective."""
    from fcp_tune.profile.collectives import COLLECTIVES

    tables: dict[str, Table] = {}
    for r in profile.nccl_rows():
        if r["collective"] not in tables:
            c = COLLECTIVES[r["collective"]]
            t = Table(title=f"{c.name} (nccl-tests {c.nccl_test}; type {r['type']}, redop {r['redop']}, "
                            f"busbw = algbw x {c.bus_formula()})", title_justify="left")
            for col in ("ranks", "size (B)", "count (elements)", "time (us)", "max (us)", "algbw (GB/s)",
                        "busbw (GB/s)"):
                t.add_column(col, justify="right")
            tables[r["collective"]] = t
        tables[r["collective"]].add_row(str(r["ranks"]), str(r["size_B"]), str(r["count"]), f"{r['time_us']:.1f}",
                                        f"{r['max_us']:.1f}", f"{r['algbw_GBps']:.4g}", f"{r['busbw_GBps']:.4g}")
    return list(tables.values())


def render(profile, title: str, wide: bool = False) -> None:
    """Summary, then the nccl-tests-style collective tables (time: median over ranks; max: slowest rank)."""
    print_table(_summary(profile, title), console, wide=wide)
    for t in nccl_tables(profile):
        print_table(t, console, keys=1, wide=wide)
    if profile.nccl_rows():
        console.print("[dim]time: median over ranks of each rank's median call; max: the slowest rank; "
                      "GB/s = 1e9 B/s[/]")


@app.command()
@cli_errors
def profile(
    nproc: int = typer.Option(2, "--nproc", "-n", min=1, max=64, help="Local processes (ignored under torchrun)."),
    quick: bool = typer.Option(False, "--quick", help="Smaller grids and fewer repeats (< 1 minute on 2 CPU cores)."),
    model: str = typer.Option("tiny", "--model", "-m", help="Model preset (tiny, small, llama3-8b, ...) or a model YAML."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output YAML (default profiles/<host>-<date>.yaml)."),
    max_len: Optional[int] = typer.Option(None, "--max-len", min=64, help="Largest attention length in the grid."),
    json_out: bool = typer.Option(False, "--json", help="Print the profile as JSON instead of a summary."),
    show: Optional[Path] = typer.Option(None, "--show", help="Show an existing profile instead of measuring."),
    wide: bool = wide_option(),
) -> None:
    """Measure attention blocks, collectives and token-linear work; write a profile YAML."""
    from fcp_tune.modelcfg import load_model_config
    from fcp_tune.launch import under_torchrun
    from fcp_tune.profile.measure import ProgressEvents, measure_profile
    from fcp_tune.profile.schema import load_profile, save_profile

    if show is not None:
        shown = load_profile(show)
        if json_out:
            print_json({"path": str(show), **shown.to_dict(), "nccl_tests": shown.nccl_rows()}, "profile")
        else:
            render(shown, f"profile {show}", wide=wide)
        return
    cfg = load_model_config(model)
    # Before measuring: a directory, a special file or an unwritable place is refused now.
    check_output_path(out if out is not None else default_output({"hostname": socket.gethostname()}), "--out")
    args = ["fcp-tune", "profile", "--nproc", str(nproc), "--model", model] + (["--quick"] if quick else [])
    args += (["--max-len", str(max_len)] if max_len else []) + (["--out", str(out)] if out else [])
    command = " ".join(shlex.quote(a) for a in args) + (" (under torchrun)" if under_torchrun() else "")
    is_rank0 = not under_torchrun() or os.environ.get("RANK") == "0"
    bar = progress_bar(transient=json_out, disable=not is_rank0)
    with bar:
        result = measure_profile(nproc=nproc, quick=quick, model=cfg, command=command,
                                 on_event=ProgressEvents(bar), max_len=max_len)
    if result is None:  # a non-zero rank under torchrun: rank 0 writes
        return
    path = save_profile(result, out or default_output(dict(result.hardware)))
    if json_out:
        print_json({"path": str(path), **result.to_dict(), "nccl_tests": result.nccl_rows()}, "profile")
    else:
        render(result, f"profile written to {path}", wide=wide)
