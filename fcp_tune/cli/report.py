"""``fcp-tune report``: one shareable page (Markdown + PNGs) for a workload on a cluster."""

from __future__ import annotations

from typing import Optional

import typer

from fcp_tune.cli import app
from fcp_tune.cli.common import cli_errors, console, print_json, search_progress
from fcp_tune.fileio import check_output_dir, file_sha256
from fcp_tune.modelcfg import load_model_config
from fcp_tune.profile.lookup import find_profile
from fcp_tune.report import build_report, write_report
from fcp_tune.scale import default_global_batch_tokens, resolve_token_budget
from fcp_tune.schemes import DEFAULT_SCHEME, scheme_names
from fcp_tune.search.study import SearchConfig, reproduce_command
from fcp_tune.workload import load_workload


@app.command()
@cli_errors
def report(
    profile: str = typer.Option(..., "--profile", help="Profile YAML or a bundled profile name (measured or reference)."),
    workload: str = typer.Option(..., "--workload", "-w", help="Workload file or built-in."),
    world_size: int = typer.Option(..., "--world-size", "-N", min=1, help="Ranks of the target cluster."),
    token_budget: str = typer.Option(..., "--token-budget", "-b", help="Max tokens one rank holds in one wave, or auto: the largest whose predicted memory fits the device."),
    out: str = typer.Option("report", "--out", "-o", help="Directory for report.md, report.json and the PNGs."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model preset or YAML (default: the profile's)."),
    trials: int = typer.Option(100, "--trials", "-t", min=1, help="Search trials."),
    ranges: int = typer.Option(5, "--ranges", min=1, help="Length ranges of the searched policy."),
    batches: int = typer.Option(8, "--batches", min=1, help="Seeded global batches each score averages over."),
    global_batch_tokens: Optional[int] = typer.Option(None, "--global-batch-tokens", help="Global batch. Default on a GPU profile: a pre-training batch at that scale, max(4M x max(1, N/256), 2 x N x budget) tokens; on a CPU profile: the workload\'s own."),
    one_wave: bool = typer.Option(False, "--one-wave", help="Global batch N x budget (one micro-batch per replica)."),
    scheme: str = typer.Option(DEFAULT_SCHEME, "--scheme", help=f"Attention scheme: {scheme_names()} (ulysses: degrees dividing the K/V head count)."),
    seed: int = typer.Option(0, "--seed"),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON too."),
) -> None:
    """Search a thresholds policy and write a page comparing it with every baseline."""
    check_output_dir(out)  # before any work
    profile_path, prof = find_profile(profile, model or "tiny", world_size)  # a file, or a bundled profile's name
    cfg_model = load_model_config(model) if model else prof.model
    budget = resolve_token_budget(token_budget, cfg_model, world_size, prof.hardware, 0)
    gbt = (global_batch_tokens if global_batch_tokens is not None
           else default_global_batch_tokens(world_size, budget, prof.hardware, one_wave))
    wl = load_workload(workload, global_batch_tokens=gbt, seed=seed)
    cfg = SearchConfig(
        world_size=world_size, token_budget=budget, trials=trials, seed=seed, ranges=ranges, batches=batches,
        scheme=scheme, profile_sha256=file_sha256(profile_path), workload_sha256=wl.seqlens_sha256(),
        command=reproduce_command(),
    )
    if json_out:
        rep = build_report(cfg, prof, wl, cfg_model)
    else:
        with search_progress(trials) as on_trial:
            rep = build_report(cfg, prof, wl, cfg_model, on_trial=on_trial)
    paths = write_report(rep, out)
    if json_out:
        print_json({**rep.to_dict(), "files": [str(p) for p in paths]})
        return
    for p in paths:
        console.print(f"wrote [bold]{p}[/]")
