"""``fcp-tune report``: one shareable page (Markdown + PNGs) for a workload on a cluster."""

from __future__ import annotations

from typing import Optional

import typer

from fcp_tune.cli import app
from fcp_tune.cli.common import cli_errors, console, print_json, require_extra, search_progress, status
from fcp_tune.cli.inputs import BATCH_HELP, BUDGET_HELP, ONE_WAVE_HELP, PROFILE_HELP, WORKLOAD_HELP, planning_inputs
from fcp_tune.scale import default_global_batch_tokens
from fcp_tune.fileio import check_output_dir, file_sha256
from fcp_tune.policy import load_policy
from fcp_tune.report import build_report, write_report
from fcp_tune.schemes import DEFAULT_SCHEME, scheme_names
from fcp_tune.search.study import SearchConfig, reproduce_command


@app.command()
@cli_errors
def report(
    profile: Optional[str] = typer.Option(None, "--profile", metavar="PATH|NAME", help=PROFILE_HELP),
    workload: Optional[str] = typer.Option(None, "--workload", "-w", metavar="PATH|BUILTIN", help=WORKLOAD_HELP),
    world_size: Optional[int] = typer.Option(None, "--world-size", "-N", min=1, metavar="INTEGER", help="Ranks of the target cluster. [default: the profile's]"),
    token_budget: Optional[str] = typer.Option(None, "--token-budget", "-b", metavar="INTEGER|auto", help=BUDGET_HELP),
    policy: Optional[str] = typer.Option(None, "--policy", "-p", metavar="PATH", help="Report this policy file (e.g. one search exported) instead of searching."),
    out: str = typer.Option("report", "--out", "-o", metavar="DIR", help="Directory for report.md, report.json and the PNGs."),
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="NAME|PATH", help="Model preset or YAML. [default: the profile's]"),
    trials: Optional[int] = typer.Option(None, "--trials", "-t", min=1, metavar="INTEGER", help="Trials the study should have (a --storage study that has them is not searched again). [default: 100; with --storage, the stored study as it is]"),
    ranges: int = typer.Option(5, "--ranges", min=1, metavar="INTEGER", help="Length ranges of the searched policy."),
    batches: int = typer.Option(8, "--batches", min=1, metavar="INTEGER", help="Seeded global batches each score averages over."),
    global_batch_tokens: Optional[int] = typer.Option(None, "--global-batch-tokens", metavar="INTEGER", help=BATCH_HELP.format(cpu="the workload's own")),
    one_wave: bool = typer.Option(False, "--one-wave", help=ONE_WAVE_HELP),
    max_len: Optional[int] = typer.Option(None, "--max-len", min=1, metavar="INTEGER", help="Split documents longer than this. [default: world size x token budget, as run]"),
    scheme: str = typer.Option(DEFAULT_SCHEME, "--scheme", metavar="NAME", help=f"Attention scheme: {scheme_names()} (ulysses: degrees dividing the K/V head count)."),
    storage: Optional[str] = typer.Option(None, "--storage", metavar="URL", help="sqlite:///PATH or journal:PATH: report (and resume) a study search stored there."),
    study_name: Optional[str] = typer.Option(None, "--study-name", metavar="NAME", help="Study name in --storage. [default: derived from the inputs]"),
    seed: int = typer.Option(0, "--seed", metavar="INTEGER", help="Seed of the batches and the sampler."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON too."),
) -> None:
    """Write a page comparing a searched (or given) policy with every baseline."""
    check_output_dir(out)  # before any work
    if trials is None:  # a stored study is reported as it is: no new trial once it has one
        trials = 1 if storage else 100
    inputs = planning_inputs(profile, model, world_size, token_budget)
    if global_batch_tokens is None:
        global_batch_tokens = default_global_batch_tokens(inputs.world_size, inputs.token_budget,
                                                          inputs.profile.hardware, one_wave)
    wl = inputs.workload(workload, global_batch_tokens, seed, max_len)
    cfg = SearchConfig(
        world_size=inputs.world_size, token_budget=inputs.token_budget, trials=trials, seed=seed, ranges=ranges,
        batches=batches, scheme=scheme, storage=storage, study_name=study_name,
        profile_sha256=file_sha256(inputs.profile_path), workload_sha256=wl.seqlens_sha256(),
        command=reproduce_command(),
    )
    given = load_policy(policy) if policy else None
    if given is not None and given.world_size != inputs.world_size:
        given = given.with_world_size(inputs.world_size)
    require_extra("matplotlib", "plots", "report (its PNGs)")
    if given is not None:
        with status("scoring the policy and the baselines"):
            rep = build_report(cfg, inputs.profile, wl, inputs.model, policy=given)
    else:
        with search_progress(trials) as on_trial:
            rep = build_report(cfg, inputs.profile, wl, inputs.model, on_trial=on_trial)
    with status("writing the report"):
        paths = write_report(rep, out)
    if json_out:
        print_json({**rep.to_dict(), "files": [str(p) for p in paths]}, "report")
        return
    for p in paths:
        console.print(f"wrote [bold]{p}[/]")
