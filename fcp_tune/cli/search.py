"""``fcp-tune search``: Optuna-tuned thresholds policy for a workload on a cluster profile."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from fcp_tune.cli import app
from fcp_tune.cli.common import cli_errors, console, fail, print_json, require_extra, search_progress
from fcp_tune.cli.inputs import BATCH_HELP, BUDGET_HELP, ONE_WAVE_HELP, PROFILE_HELP, WORKLOAD_HELP, planning_inputs
from fcp_tune.scale import default_global_batch_tokens
from fcp_tune.cli.tables import print_table, wide_option
from fcp_tune.fileio import check_output_dir, check_output_path, file_sha256
from fcp_tune.schemes import DEFAULT_SCHEME, scheme_names
from fcp_tune.search.study import SearchConfig, export_policy, reproduce_command, run_search


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "workload"


@app.command()
@cli_errors
def search(
    profile: Optional[str] = typer.Option(None, "--profile", metavar="PATH|NAME", help=PROFILE_HELP),
    workload: Optional[str] = typer.Option(None, "--workload", "-w", metavar="PATH|BUILTIN", help=WORKLOAD_HELP),
    world_size: Optional[int] = typer.Option(None, "--world-size", "-N", help="Ranks of the target cluster (may exceed this machine). Default: the profile's."),
    token_budget: Optional[str] = typer.Option(None, "--token-budget", "-b", metavar="INTEGER|auto", help=BUDGET_HELP),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model preset or YAML (default: the profile's model)."),
    trials: int = typer.Option(200, "--trials", "-t", help="Completed trials the study should have."),
    ranges: int = typer.Option(5, "--ranges", help="Length ranges of the policy (boundaries + 1)."),
    batches: int = typer.Option(8, "--batches", help="Seeded global batches the objective averages over."),
    global_batch_tokens: Optional[int] = typer.Option(None, "--global-batch-tokens", help=BATCH_HELP.format(cpu="the workload's own")),
    one_wave: bool = typer.Option(False, "--one-wave", help=ONE_WAVE_HELP),
    scheme: str = typer.Option(DEFAULT_SCHEME, "--scheme", help=f"Attention scheme: {scheme_names()} (ulysses: degrees dividing the K/V head count)."),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe (default), random or qmc."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampler and the batches."),
    storage: Optional[str] = typer.Option(None, "--storage", help="sqlite:///PATH or journal:PATH to resume or share a study."),
    study_name: Optional[str] = typer.Option(None, "--study-name", help="Study name (default: derived from the inputs)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", metavar="PATH", help="Policy file to write. [default: strategies/NAME-nN.yaml: the workload's name, N ranks]"),
    plots: Optional[str] = typer.Option(None, "--plots", metavar="DIR", help="Directory for PNG plots (needs the plots extra)."),
    max_len: Optional[int] = typer.Option(None, "--max-len", min=1, metavar="INTEGER", help="Split documents longer than this. [default: world size x token budget, as run]"),
    comm_penalty: float = typer.Option(0.0, "--comm-penalty", min=0.0, help="Trade step time for communicators: objective x (1 + this x communicators per rank), e.g. 0.01."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    wide: bool = wide_option(),
) -> None:
    """Tune the length thresholds and CP degrees of a policy; export it to strategies/."""
    if out is not None:
        check_output_path(out)  # before any work: a directory or special file is refused now
    if plots is not None:
        check_output_dir(plots, "--plots")
        require_extra("matplotlib", "plots", "--plots")
    inputs = planning_inputs(profile, model, world_size, token_budget)
    prof, profile_path, cfg_model = inputs.profile, inputs.profile_path, inputs.model
    world_size, token_budget = inputs.world_size, inputs.token_budget
    cfg = SearchConfig(
        world_size=world_size, token_budget=token_budget, trials=trials, seed=seed, ranges=ranges, batches=batches,
        scheme=scheme, sampler=sampler, storage=storage, study_name=study_name,
        profile_sha256=file_sha256(profile_path), command=reproduce_command(), comm_penalty=comm_penalty,
    )
    # Documents longer than the world holds are split there, as `fcp-tune run` does.
    if global_batch_tokens is None:
        global_batch_tokens = default_global_batch_tokens(world_size, token_budget, prof.hardware, one_wave)
    wl = inputs.workload(workload, global_batch_tokens, seed, max_len)
    cfg = replace(cfg, workload_sha256=wl.seqlens_sha256())
    path = Path(out) if out else Path("strategies") / f"{_slug(wl.name)}-n{world_size}.yaml"
    check_output_path(path, "--out")
    try:
        with search_progress(trials) as on_trial:  # on stderr: --json output on stdout stays clean
            result, study, _ = run_search(cfg, prof, wl, cfg_model, on_trial=on_trial)
    except KeyboardInterrupt:
        where = f" resume with the same --storage {storage}" if storage else " (use --storage to make it resumable)"
        fail(f"search interrupted;{where}", code=130)
    export_policy(result, path)
    plot_paths = []
    if plots:
        from fcp_tune.search.plots import write_plots

        plot_paths = [str(p) for p in write_plots(study, result, wl, plots)]
    if json_out:
        print_json({**result.to_dict(), "path": str(path), "plots": plot_paths}, "search")
        return
    _render(result, path, plot_paths, wide)


def _render(result, path: Path, plot_paths: list[str], wide: bool = False) -> None:
    p = result.policy
    table = Table(title=f"searched policy ({result.trials_completed} trials, study {result.study_name})")
    table.add_column("sequence length")
    table.add_column("CP degree", justify="right")
    lo = 1
    for b, d in zip(list(p.boundaries) + [None], p.degrees):
        table.add_row(f"{lo} .. {b}" if b is not None else f">= {lo}", str(d))
        lo = (b or 0) + 1
    print_table(table, console, wide=wide)
    cmp_ = Table(title="predicted step time (cost model)")
    for col in ("policy", "step s", "tokens/s", "efficiency", "speedup of searched"):
        cmp_.add_column(col, justify="left" if col == "policy" else "right")
    rows = [("searched", "searched", result.score)] + [
        (b.name, b.policy.kind, b.score) for b in sorted(result.baselines, key=lambda b: b.score.step_s)]
    static_shown = 0
    for name, kind, s in rows:
        if kind == "static":
            static_shown += 1
            if static_shown > 4:
                continue
        cmp_.add_row(name, f"{s.step_s:.4g}", f"{s.tokens_per_s:,.0f}", f"{s.efficiency:.2f}",
                     f"{s.step_s / result.score.step_s:.2f}x")
    print_table(cmp_, console, wide=wide)
    pred = result.policy.metadata["predicted"]
    sp = result.speedups
    labels = [("megatron", f"Megatron-style static ({pred.get('megatron')})"),
              ("best_static", f"best cost-balanced static ({pred['best_static']})"),
              ("pow2", "pow2 (Megatron-Core dynamic CP)")]
    console.print("searched policy speedup over " + "; ".join(
        f"{label}: {sp[key]:.2f}x" for key, label in labels if key in sp))
    rec = result.recommendation
    if rec is not None and rec["policy"] == "adaptive":
        console.print(f"recommendation: run the adaptive policy - the best thresholds table found is "
                      f"{100 * rec['searched_vs_adaptive']:+.1f} % slower ({rec['searched_step_s']:.4g} s vs "
                      f"{rec['adaptive_step_s']:.4g} s per step), beyond the {100 * rec['tolerance']:.0f} % tolerance: "
                      "`fcp-tune run --policy adaptive`", highlight=False)
    elif rec is not None:
        console.print(f"recommendation: run the searched table: `fcp-tune run --policy {path}`", highlight=False)
    advice = result.advice()
    if advice:  # beside an adaptive recommendation it is a note on the table, not a second recommendation
        label = "note" if rec is not None and rec["policy"] == "adaptive" else "recommendation"
        console.print(f"{label}: {advice}", highlight=False)
    console.print(f"wrote [bold]{path}[/]")
    for pp in plot_paths:
        console.print(f"plot: {pp}")
