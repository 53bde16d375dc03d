"""``fcp-tune report``: one shareable page (Markdown + PNGs) for a workload on a cluster."""

from __future__ import annotations

from typing import Optional

import typer

from fcp_tune.cli import app
from fcp_tune.cli.common import cli_errors, console, print_json
from fcp_tune.cli.search import search_progress
from fcp_tune.fileio import file_sha256
from fcp_tune.modelcfg import load_model_config
from fcp_tune.profile.bundled import resolve_profile_path
from fcp_tune.profile.schema import load_profile
from fcp_tune.report import build_report, write_report
from fcp_tune.search.study import SearchConfig, reproduce_command
from fcp_tune.workload import load_workload


@app.command()
@cli_errors
def report(
    profile: str = typer.Option(..., "--profile", help="Profile YAML or a bundled profile name (measured or reference)."),
    workload: str = typer.Option(..., "--workload", "-w", help="Workload file or built-in."),
    world_size: int = typer.Option(..., "--world-size", "-N", min=1, help="Ranks of the target cluster."),
    token_budget: int = typer.Option(..., "--token-budget", "-b", min=1, help="Max tokens one rank holds in one wave."),
    out: str = typer.Option("report", "--out", "-o", help="Directory for report.md, report.json and the PNGs."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model preset or YAML (default: the profile's)."),
    trials: int = typer.Option(100, "--trials", "-t", min=1, help="Search trials."),
    ranges: int = typer.Option(5, "--ranges", min=1, help="Length ranges of the searched policy."),
    batches: int = typer.Option(8, "--batches", min=1, help="Seeded global batches each score averages over."),
    global_batch_tokens: Optional[int] = typer.Option(None, "--global-batch-tokens", help="Override the workload's global batch."),
    scheme: str = typer.Option("allgather", "--scheme", help="Attention scheme: allgather, ring or ulysses (ulysses: degrees dividing the K/V head count)."),
    seed: int = typer.Option(0, "--seed"),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON too."),
) -> None:
    """Search a thresholds policy and write a page comparing it with every baseline."""
    profile_path = resolve_profile_path(profile)  # a file, or a bundled profile's name
    prof = load_profile(profile_path)
    wl = load_workload(workload, global_batch_tokens=global_batch_tokens, seed=seed)
    cfg_model = load_model_config(model) if model else prof.model
    cfg = SearchConfig(
        world_size=world_size, token_budget=token_budget, trials=trials, seed=seed, ranges=ranges, batches=batches,
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
        print_json({**rep.to_dict(), "files": [str(p) for p in paths]}, "report")
        return
    for p in paths:
        console.print(f"wrote [bold]{p}[/]")
