"""``fcp-tune run``: real training steps under a policy, baselines side by side."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

from fcp_tune.cli import app
from fcp_tune.cli.common import cli_errors, console, counting_progress, print_json, split_names
from fcp_tune.cli.tables import print_table, wide_option
from fcp_tune.executor import RunConfig, RunReport, run_training
from fcp_tune.executor.figures import run_figures
from fcp_tune.launch import under_torchrun
from fcp_tune.modelcfg import load_model_config
from fcp_tune.policy.kinds import spec_help
from fcp_tune.policy.specs import resolve_policies
from fcp_tune.schemes import scheme_names
from fcp_tune.workload import default_workload_path, load_workload


def build_run_config(
    policy: Optional[str], workload: Optional[str], nproc: Optional[int], steps: int, warmup: int,
    compare: list[str], model: str, seed: int, lr: float, scheme: Optional[str],
    global_batch_tokens: Optional[int], profile: Optional[str] = None,
) -> RunConfig:
    """Resolve the command line's names into a :class:`RunConfig` (library entry point)."""
    wl = load_workload(workload or str(default_workload_path()), global_batch_tokens=global_batch_tokens)
    policies = resolve_policies(policy, compare, nproc, scheme, wl)
    main = policies[0][1]
    cfg_model = load_model_config(model)
    cost = None
    if profile:
        from fcp_tune.costmodel import CostModel
        from fcp_tune.profile.schema import load_profile

        cost = CostModel.from_profile(load_profile(profile), cfg_model, scheme=main.scheme, world_size=main.world_size)
    return RunConfig(policies, wl, cfg_model, steps=steps, warmup=warmup, seed=seed, lr=lr, cost=cost)


def _span(values: tuple[float, ...]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def render(report: RunReport, wide: bool = False, figures: Optional[dict] = None) -> None:
    """Per-step table (ranks folded to min-max; --json has every rank) and a summary."""
    steps = Table(title=f"steps: {report.world_size} ranks, {report.backend}, {report.communicators} communicators "
                        f"(<= {report.per_rank_communicators} per rank, created lazily)")
    for col in ("policy", "step", "wall s", "tok/s", "loss", "groups per wave", "busy s", "comm s", "idle s", "MiB"):
        steps.add_column(col, justify="left" if col in ("policy", "groups per wave") else "right",
                         no_wrap=col != "groups per wave")
    for i in range(len(report.results[0].steps)):
        for r in report.results:
            s = r.steps[i]
            steps.add_row(
                r.name, f"{s.step}{'*' if i < r.warmup else ''}", f"{s.wall_s:.2f}", f"{s.tokens_per_s:,.0f}",
                f"{s.loss:.3f}", s.layout, _span(s.busy_s), _span(s.comm_s), _span(s.idle_s),
                f"{s.peak_bytes / 2**20:.0f}",
            )
    print_table(steps, console, keys=2, wide=wide)
    console.print("[dim]busy/comm/idle: min-max over ranks; groups per wave: group sizes, waves separated by |[/]")
    for r in report.results:
        m = r.measured
        waited = sum(max(s.plan_wait_s, default=0.0) for s in m) / len(m)
        console.print(f"[dim]{r.name}: planning {sum(s.plan_ms for s in m) / len(m):.1f} ms per step, "
                      f"{1e3 * waited:.1f} ms of it not hidden behind the previous step[/]")
    summary = Table(title="summary (steps marked * are warm-up and excluded)")
    figures = figures or {}
    for col in ("policy", "kind", "tokens/s", "TFLOP/s per rank", "MFU", "median step s",
                f"speedup of {report.results[0].name}"):
        summary.add_column(col, justify="left" if col in ("policy", "kind") else "right")
    for r in report.results:
        f = figures.get(r.name)
        summary.add_row(
            r.name, r.policy["kind"] + (f" d={r.policy['degree']}" if r.policy.get("degree") else ""),
            f"{r.tokens_per_s:,.0f}", "-" if f is None else f"{f.tflops_per_gpu:.3g}",
            "-" if f is None or f.mfu is None else f"{f.mfu:.1%}",
            f"{r.median_step_s:.3f}", f"{report.speedups()[r.name]:.2f}x",
        )
    print_table(summary, console, wide=wide)
    console.print("[dim]TFLOP/s: model FLOPs (PaLM convention, attention per sequence) per second per rank; "
                  "MFU where the --profile names the device's peak[/]")
    for name, f in figures.items():
        if f.over_device:
            console.print(f"[bold red]{name}: {f.over_device}: not a result on this device[/]")
    if report.world_size > 2:
        console.print(
            "[dim]note: with more processes than cores, wall-clock is shared; compare busy time per rank too.[/]"
        )


@app.command()
@cli_errors
def run(
    policy: Optional[str] = typer.Option(None, "--policy", "-p", help=f"Policy file, or a kind: {spec_help()}. Default: the bundled adaptive policy."),
    workload: Optional[str] = typer.Option(None, "--workload", "-w", help="Workload file or built-in (see `fcp-tune workload show`). Default: bundled long tail."),
    nproc: Optional[int] = typer.Option(None, "--nproc", "-n", min=1, help="Local processes (default: the policy's world size). Ignored under torchrun."),
    steps: int = typer.Option(6, "--steps", "-s", min=1, help="Training steps per policy."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Leading steps excluded from the summary."),
    compare: Optional[List[str]] = typer.Option(None, "--compare", "-c", help=f"Baselines to run interleaved: {spec_help()} or a policy file (repeat or comma-separate)."),
    model: str = typer.Option("tiny", "--model", "-m", help="Model preset (tiny, small) or model YAML."),
    scheme: Optional[str] = typer.Option(None, "--scheme", help=f"Override the attention scheme: {scheme_names()}."),
    global_batch_tokens: Optional[int] = typer.Option(None, "--global-batch-tokens", min=1, help="Override the workload's global batch size."),
    profile: Optional[str] = typer.Option(None, "--profile", help="Plan with the cost model calibrated from this profile."),
    seed: int = typer.Option(0, "--seed"),
    lr: float = typer.Option(1e-3, "--lr"),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds before a local run is killed."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    wide: bool = wide_option(),
) -> None:
    """Train STEPS steps under a policy on local processes (or torchrun), baselines side by side."""
    compare_list = split_names(compare)
    if policy is None and workload is None and compare is None:
        compare_list = ["megatron", "static", "pow2"]  # the no-argument demo shows the baselines too
    warmup = min(warmup, steps - 1)  # --steps 1 runs one measured step
    cfg = build_run_config(policy, workload, nproc, steps, warmup, compare_list, model, seed, lr, scheme,
                           global_batch_tokens, profile)
    total = cfg.steps * len(cfg.policies)
    if under_torchrun() or json_out:
        report = run_training(cfg, timeout=timeout)
    else:
        with counting_progress(f"training on {cfg.world_size} local processes", total) as on_event:
            report = run_training(cfg, timeout=timeout, on_event=on_event)
    if report is None:  # a non-zero rank under torchrun
        return
    figures = run_figures(report, cfg.model, cfg.cost)
    if json_out:
        print_json({**report.to_dict(), "figures": {k: v.to_dict() for k, v in figures.items()}})
    else:
        render(report, wide=wide, figures=figures)
