"""``fcp-tune search``: Optuna-tuned thresholds policy for a workload on a cluster profile."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from fcp_tune.cli import app
from fcp_tune.cli.common import cli_errors, console, fail, print_json, search_progress
from fcp_tune.cli.tables import print_table, wide_option
from fcp_tune.fileio import check_output_dir, check_output_path, file_sha256
from fcp_tune.limits import MAX_TOKENS
from fcp_tune.modelcfg import load_model_config
from fcp_tune.policy import load_policy
from fcp_tune.policy.specs import default_policy_path
from fcp_tune.profile.lookup import find_profile
from fcp_tune.scale import default_global_batch_tokens, resolve_token_budget
from fcp_tune.schemes import DEFAULT_SCHEME, scheme_names
from fcp_tune.search.study import SearchConfig, export_policy, reproduce_command, run_search
from fcp_tune.workload import default_workload_path, load_workload


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "workload"


@app.command()
@cli_errors
def search(
    profile: Optional[str] = typer.Option(None, "--profile", help="Profile YAML or bundled name (measured or reference). Default: as validate, the newest profile measured on this host, else the bundled CPU profile."),
    workload: Optional[str] = typer.Option(None, "--workload", "-w", help="Workload file or built-in. Default: the bundled long tail."),
    world_size: Optional[int] = typer.Option(None, "--world-size", "-N", help="Ranks of the target cluster (may exceed this machine). Default: the profile's."),
    token_budget: Optional[str] = typer.Option(None, "--token-budget", "-b", help="Max tokens one rank holds in one wave (memory), or auto: the largest whose predicted memory fits the device. Default: the bundled policy's."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model preset or YAML (default: the profile's model)."),
    trials: int = typer.Option(200, "--trials", "-t", help="Completed trials the study should have."),
    ranges: int = typer.Option(5, "--ranges", help="Length ranges of the policy (boundaries + 1)."),
    batches: int = typer.Option(8, "--batches", help="Seeded global batches the objective averages over."),
    global_batch_tokens: Optional[int] = typer.Option(None, "--global-batch-tokens", help="Global batch. Default on a GPU profile: a pre-training batch at that scale, max(4M x max(1, N/256), 2 x N x budget) tokens; on a CPU profile: the workload\'s own."),
    one_wave: bool = typer.Option(False, "--one-wave", help="Global batch N x budget (one micro-batch per replica)."),
    scheme: str = typer.Option(DEFAULT_SCHEME, "--scheme", help=f"Attention scheme: {scheme_names()} (ulysses: degrees dividing the K/V head count)."),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe (default), random or qmc."),
    seed: int = typer.Option(0, "--seed"),
    storage: Optional[str] = typer.Option(None, "--storage", help="sqlite:///PATH or journal:PATH to resume or share a study."),
    study_name: Optional[str] = typer.Option(None, "--study-name", help="Study name (default: derived from the inputs)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Policy file to write (default strategies/<workload>-n<N>.yaml)."),
    plots: Optional[str] = typer.Option(None, "--plots", help="Directory for PNG plots."),
    comm_penalty: float = typer.Option(0.0, "--comm-penalty", min=0.0, help="Trade step time for communicators: objective x (1 + this x communicators per rank), e.g. 0.01."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    wide: bool = wide_option(),
) -> None:
    """Tune the length thresholds and CP degrees of a policy; export it to strategies/."""
    if out is not None:
        check_output_path(out)  # before any work: a directory or special file is refused now
    if plots is not None:
        check_output_dir(plots, "--plots")
    profile_path, prof = find_profile(profile, model or "tiny", world_size or 1)
    world_size = prof.world_size if world_size is None else world_size
    cfg_model = load_model_config(model) if model else prof.model
    token_budget = resolve_token_budget(token_budget, cfg_model, world_size, prof.hardware,
                                        load_policy(default_policy_path()).token_budget)
    if global_batch_tokens is None:
        global_batch_tokens = default_global_batch_tokens(world_size, token_budget, prof.hardware, one_wave)
    cfg = SearchConfig(
        world_size=world_size, token_budget=token_budget, trials=trials, seed=seed, ranges=ranges, batches=batches,
        scheme=scheme, sampler=sampler, storage=storage, study_name=study_name,
        profile_sha256=file_sha256(profile_path), command=reproduce_command(), comm_penalty=comm_penalty,
    )
    # The bundled workload's documents are split to what the world can hold (as validate does).
    wl = load_workload(workload or str(default_workload_path()), global_batch_tokens=global_batch_tokens, seed=seed,
                       max_len=None if workload else min(world_size * token_budget, MAX_TOKENS))
    cfg = replace(cfg, workload_sha256=wl.seqlens_sha256())
    path = Path(out) if out else Path("strategies") / f"{_slug(wl.name)}-n{world_size}.yaml"
    check_output_path(path, "--out")
    try:
        if json_out:
            result, study, _ = run_search(cfg, prof, wl, cfg_model)
        else:
            with search_progress(trials) as on_trial:
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
        print_json({**result.to_dict(), "path": str(path), "plots": plot_paths})
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
    for col in ("policy", "step s", "tokens/s", "TFLOP/s", "MFU", "efficiency", "GiB", "speedup of searched"):
        cmp_.add_column(col, justify="left" if col == "policy" else "right")
    rows = [("searched", "searched", result.score)] + [
        (b.name, b.policy.kind, b.score) for b in sorted(result.baselines, key=lambda b: b.score.step_s)]
    static_shown = 0
    for name, kind, s in rows:
        if kind == "static":
            static_shown += 1
            if static_shown > 4:
                continue
        gib = f"{s.peak_memory_bytes / 2**30:.1f}" + ("" if s.fits else " !")
        cmp_.add_row(name, f"{s.step_s:.4g}", f"{s.tokens_per_s:,.0f}", f"{s.tflops_per_gpu:.0f}",
                     "-" if s.mfu is None else f"{s.mfu:.1%}", f"{s.efficiency:.2f}", gib,
                     f"{s.step_s / result.score.step_s:.2f}x")
    print_table(cmp_, console, wide=wide)
    pred = result.policy.metadata["predicted"]
    sp = result.speedups
    labels = [("megatron", f"Megatron-LM static CP tuned ({pred.get('megatron')}, ring/p2p)"),
              ("megatron_smallest", f"its smallest degree ({pred.get('megatron_smallest')})"),
              ("mcore_dynamic", "Megatron-Core dynamic CP (mcore-dynamic)"),
              ("best_static", f"best cost-balanced static ({pred['best_static']})")]
    console.print("searched policy speedup over " + "; ".join(
        f"{label}: {sp[key]:.2f}x" for key, label in labels if key in sp))
    rec = result.recommendation
    if rec is not None and rec["policy"] == "adaptive":
        console.print(f"recommendation: run the adaptive policy - the best thresholds table found is "
                      f"{100 * rec['searched_vs_adaptive']:+.1f} % slower ({rec['searched_step_s']:.4g} s vs "
                      f"{rec['adaptive_step_s']:.4g} s per step), beyond the {100 * rec['tolerance']:.0f} % tolerance")
    console.print(f"wrote [bold]{path}[/]")
    for pp in plot_paths:
        console.print(f"plot: {pp}")
