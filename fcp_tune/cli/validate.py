"""``fcp-tune validate``: measured executor steps against the cost model's predictions."""

from __future__ import annotations

import math
from typing import List, Optional

import typer
from rich.table import Table

from fcp_tune.cli import app
from fcp_tune.cli.common import cli_errors, console, counting_progress, err_console, print_json, split_names
from fcp_tune.cli.tables import print_table, wide_option
from fcp_tune.fidelity import TARGET_MAPE_PCT, ValidationReport, validate
from fcp_tune.launch import check_run_world
from fcp_tune.policy import load_policy
from fcp_tune.policy.kinds import spec_help
from fcp_tune.policy.specs import default_policy_path, fit_world, resolve_policies, scheme_override
from fcp_tune.profile.lookup import find_profile
from fcp_tune.schemes import scheme_names
from fcp_tune.workload import default_workload_path, load_workload

DEFAULT_COMPARE = ("megatron", "mcore-dynamic")  # what users run: Megatron-LM static CP, Megatron-Core dynamic CP


def _pct(x: Optional[float]) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.1f}%"


def _span(values: tuple[float, ...]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}" if values else "-"


def render(report: ValidationReport, wide: bool = False) -> None:
    """Per-step table, then the per-policy summary with MAPE and the target check."""
    console.print(
        f"profile [bold]{report.profile}[/] ({report.profile_label}, {report.profile_created}); "
        f"{report.world_size} {report.backend} ranks, model {report.model}, workload {report.workload}; "
        f"load average {report.load_before:.2f} -> {report.load_after:.2f}",
        highlight=False,
    )
    what = "wall" if report.include_planning else "wall - planning"
    steps = Table(title=f"steps: measured ({what}, slowest rank) vs predicted")
    for col in ("policy", "step", "groups per wave", "measured s", "predicted s", "error",
                "busy meas s", "busy pred s", "busy error", "plan ms"):
        steps.add_column(col, justify="left" if col in ("policy", "groups per wave") else "right",
                         no_wrap=col != "groups per wave")
    n_steps = max(len(p.steps) for p in report.policies)
    for i in range(n_steps):
        for p in report.policies:
            if i >= len(p.steps):
                continue
            s = p.steps[i]
            errs = [e for e in s.busy_error_pct if e is not None]
            worst = max(errs, key=abs) if errs else None
            steps.add_row(
                p.name, f"{s.step}{'*' if s.warmup else ''}", s.layout, f"{s.measured_s:.3f}",
                f"{s.predicted_s:.3f}", _pct(s.error_pct), _span(s.measured_busy_s), _span(s.predicted_busy_s),
                _pct(worst), f"{s.plan_ms:.1f}",
            )
    print_table(steps, console, keys=2, wide=wide)
    console.print("[dim]error = (predicted - measured) / measured; busy: time in the rank's groups, min-max over "
                  "ranks; busy error: the worst rank; * = warm-up, excluded[/]")
    summary = Table(title=f"summary (target: step-time MAPE <= {TARGET_MAPE_PCT:.0f}% for every policy)")
    for col in ("policy", "kind", "steps", "measured mean s", "predicted mean s", "step MAPE", "bias",
                "busy MAPE", "plan ms"):
        summary.add_column(col, justify="left" if col in ("policy", "kind") else "right")
    for p in report.policies:
        ok = p.step_mape <= TARGET_MAPE_PCT
        summary.add_row(
            p.name, p.kind, str(len(p.measured)), f"{p.measured_mean_s:.3f}", f"{p.predicted_mean_s:.3f}",
            f"[{'green' if ok else 'red'}]{p.step_mape:.1f}%[/]", _pct(p.bias_pct), f"{p.busy_mape:.1f}%",
            f"{p.plan_ms_mean:.1f}",
        )
    print_table(summary, console, wide=wide)
    verdict = "[green]meets[/]" if report.meets() else "[red]misses[/]"
    console.print(f"overall: step-time MAPE {report.step_mape:.1f}%, busy-time MAPE {report.busy_mape:.1f}%; "
                  f"worst policy {report.worst_step_mape:.1f}% {verdict} the {TARGET_MAPE_PCT:.0f}% target")


@app.command(name="validate")
@cli_errors
def validate_cmd(
    policy: Optional[str] = typer.Option(None, "--policy", "-p", help=f"Policy file, or a kind: {spec_help()}. Default: the bundled adaptive policy."),
    compare: Optional[List[str]] = typer.Option(None, "--compare", "-c", help="Baselines run interleaved (repeat or comma-separate; 'none' for none). Default: megatron, mcore-dynamic."),
    workload: Optional[str] = typer.Option(None, "--workload", "-w", help="Workload file or built-in. [default: the bundled workload, documents split at the largest power of two <= nproc, x token_budget]"),
    profile: Optional[str] = typer.Option(None, "--profile", help="Profile YAML or bundled name. Default: the newest profile measured on this host for the model, else the bundled cpu-epyc-2proc-tiny."),
    nproc: int = typer.Option(2, "--nproc", "-n", min=1, help="Local processes (the world size the policies are fitted to)."),
    steps: int = typer.Option(6, "--steps", "-s", min=1, help="Training steps per policy."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Leading steps excluded from the errors."),
    model: str = typer.Option("tiny", "--model", "-m", help="Model preset (tiny, small) or model YAML."),
    scheme: Optional[str] = typer.Option(None, "--scheme", help=f"Override the attention scheme: {scheme_names()}."),
    max_len: Optional[int] = typer.Option(None, "--max-len", min=1, help="Split documents longer than this."),
    global_batch_tokens: Optional[int] = typer.Option(None, "--global-batch-tokens", min=1, help="Override the workload's global batch size."),
    include_planning: bool = typer.Option(False, "--include-planning", help="Count the planner's time in the measured step."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the batches and the model."),
    timeout: float = typer.Option(900.0, "--timeout", help="Seconds before the local run is killed."),
    check: bool = typer.Option(False, "--check", help=f"Exit with status 1 when the step-time MAPE misses the {TARGET_MAPE_PCT:.0f}% target."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    wide: bool = wide_option(),
) -> None:
    """Run STEPS executor steps per policy and compare step and busy times with the cost model."""
    from fcp_tune.costmodel import CostModel
    from fcp_tune.modelcfg import load_model_config

    check_run_world("nproc", nproc)  # before any costly preparation
    compare_list = list(DEFAULT_COMPARE) if compare is None else [c for c in split_names(compare) if c != "none"]
    cfg_model = load_model_config(model)
    profile_path, prof = find_profile(profile, cfg_model.name, nproc)
    base = scheme_override(fit_world(load_policy(default_policy_path()), nproc), scheme)
    CostModel.from_profile(prof, cfg_model, scheme=base.scheme, world_size=nproc)  # can it predict nproc ranks?
    if workload is None and max_len is None:
        # Split documents longer than the largest power-of-two group can hold (as a context
        # length would), so every default policy (pow2 included) fits the bundled workload.
        max_len = (1 << (nproc.bit_length() - 1)) * base.token_budget
    wl = load_workload(workload or str(default_workload_path()), global_batch_tokens=global_batch_tokens,
                       max_len=max_len)
    policies = resolve_policies(policy, compare_list, nproc, scheme, wl)  # checks each fits the longest sequence
    total = steps * len(policies)
    run = dict(steps=steps, warmup=warmup, seed=seed, include_planning=include_planning,
               profile_source=str(profile_path), timeout=timeout)
    with counting_progress(f"training on {nproc} local processes", total) as on_event:  # stderr
        report = validate(policies, wl, cfg_model, prof, on_event=on_event, **run)
    if report is None:  # a non-zero rank under torchrun
        return
    if json_out:
        print_json(report.to_dict(), "validate")
    else:
        render(report, wide=wide)
    if check and not report.meets():
        err_console.print(f"validate --check: step-time MAPE {report.worst_step_mape:.1f}% misses the "
                          f"{TARGET_MAPE_PCT:.0f}% target", highlight=False)
        raise typer.Exit(1)
