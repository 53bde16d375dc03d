"""``fcp-tune run``: real training steps under a policy, baselines side by side.

With no arguments this is the main job: the bundled adaptive FCP policy on one local
process per core (2 ranks on a 2-core machine), next to the Megatron-style static CP
baseline, Megatron-Core's dynamic CP and fcp-tune's own cost-balanced static and pow2, on the bundled workload (many short
documents beside a few longer than one rank's token budget), planned with the bundled CPU
profile. Policies are compared by the plan's critical path of busy time, with wall-clock
and the cost model's predicted ratio beside it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from fcp_tune.cli import app
from fcp_tune.cli.common import cli_errors, console, counting_progress, err_console, print_json, split_names
from fcp_tune.cli.tables import print_table, wide_option
from fcp_tune.executor import RunConfig, RunReport, run_training
from fcp_tune.executor.figures import run_figures
from fcp_tune.launch import check_run_world, under_torchrun
from fcp_tune.limits import MAX_TOKENS
from fcp_tune.modelcfg import load_model_config
from fcp_tune.policy import load_policy
from fcp_tune.policy.kinds import spec_help
from fcp_tune.policy.specs import default_policy_path, document_cap, resolve_policies
from fcp_tune.schemes import scheme_names
from fcp_tune.workload import default_workload_path, load_workload

DEFAULT_COMPARE = ("megatron", "mcore-dynamic", "static", "pow2")  # what users run first: Megatron-LM static CP, Megatron-Core dynamic CP


def launcher_world_size() -> Optional[int]:
    """The world size torchrun (or another launcher) set, else None."""
    return int(os.environ["WORLD_SIZE"]) if under_torchrun() else None


def build_run_config(
    policy: Optional[str], workload: Optional[str], nproc: Optional[int], steps: int, warmup: int,
    compare: list[str], model: str, seed: int, lr: float, scheme: Optional[str],
    global_batch_tokens: Optional[int], profile: Optional[str] = None, token_budget: Optional[int] = None,
    repeats: int = 1, max_len: Optional[int] = None,
) -> RunConfig:
    """Resolve the command line's names into a :class:`RunConfig` (library entry point).

    ``nproc`` defaults to the launcher's world size under torchrun, else the policy's.
    Documents longer than ``world * token_budget`` are split
    (:func:`~fcp_tune.policy.specs.document_cap`) unless ``max_len`` is given, as ``search`` does.
    ``profile``: a profile file or bundled name, ``"none"`` for the planner's default cost,
    or None for the profile ``validate`` would pick (measured on this host, else the bundled
    CPU profile); it plans every policy and predicts every step.
    """
    nproc = nproc if nproc is not None else launcher_world_size()
    if nproc is not None:
        check_run_world("nproc", nproc)  # before any costly preparation
    base = load_policy(policy if policy and Path(policy).is_file() else default_policy_path())
    cap = max_len or min(document_cap(nproc or base.world_size, token_budget or base.token_budget), MAX_TOKENS)
    wl = load_workload(workload or str(default_workload_path()), global_batch_tokens=global_batch_tokens,
                       max_len=cap)
    policies = resolve_policies(policy, compare, nproc, scheme, wl, token_budget=token_budget)
    main = policies[0][1]
    cfg_model = load_model_config(model)
    cost, source = None, ""
    if profile != "none":
        from fcp_tune.costmodel import CostModel
        from fcp_tune.profile.lookup import find_profile

        path, prof = find_profile(profile, cfg_model.name, main.world_size)
        cost = CostModel.from_profile(prof, cfg_model, scheme=main.scheme, world_size=main.world_size)
        source = f"{path.name} ({prof.label}, {prof.world_size} {prof.backend} processes)"
    return RunConfig(policies, wl, cfg_model, steps=steps, warmup=warmup, seed=seed, lr=lr, cost=cost,
                     repeats=repeats, profile=source)


def _span(values: tuple[float, ...]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def render(report: RunReport, wide: bool = False) -> None:
    """Steps of the first round, the summary with median and spread, and the headline."""
    console.print(
        f"{report.world_size} {report.backend} ranks on {report.cores or '?'} cores; planned and predicted with "
        f"{report.profile or 'the planner default cost (no profile)'}; workload {report.workload}; "
        f"{report.repeats} round(s) of the measured steps, policies interleaved; {report.communicators} "
        f"communicators (<= {report.per_rank_communicators} per rank, created lazily)", highlight=False)
    first = report.results[0]
    shown = [i for i, s in enumerate(first.steps) if s.round == 0]
    steps = Table(title=f"steps of round 1 (of {report.repeats}; --json has every round)")
    for col in ("policy", "step", "groups per wave", "wall s", "busy s", "pred s", "CPU s", "loss"):
        steps.add_column(col, justify="left" if col in ("policy", "groups per wave") else "right",
                         no_wrap=col != "groups per wave")
    for i in shown:
        for r in report.results:
            s = r.steps[i]
            steps.add_row(r.name, f"{s.step}{'*' if s.warmup else ''}", s.layout, f"{s.wall_s:.3f}",
                          f"{s.critical_path_s:.3f}", "-" if s.predicted_s is None else f"{s.predicted_s:.3f}",
                          _span(s.rank_cpu_s), f"{s.loss:.3f}")
    print_table(steps, console, keys=2, wide=wide)
    console.print("[dim]* warm-up, excluded. groups per wave: group sizes, waves separated by |. busy: the "
                  "plan's critical path of busy time (per rank and wave: CPU seconds + transfer time); pred: "
                  "the cost model's step time for the same plan; CPU: per rank in its groups, min-max.[/]")
    for r in report.results:
        m = r.measured
        waited = sum(max(s.plan_wait_s, default=0.0) for s in m) / len(m)
        console.print(f"[dim]{r.name}: planning {sum(s.plan_ms for s in m) / len(m):.1f} ms per step, "
                      f"{1e3 * waited:.1f} ms of it not hidden behind the previous step; peak "
                      f"{max(s.peak_bytes for s in m) / 2**20:.0f} MiB per rank[/]")
    name = first.name
    busy, wall, pred = report.speedups("critical_path"), report.speedups("wall"), report.predicted_speedups()
    summary = Table(title=f"summary: how much faster {name} is; median over {report.repeats} round(s)")
    for col in ("policy", "kind", "tok/s busy", "by busy", "range", "by wall", "predicted"):
        summary.add_column(col, justify="left" if col in ("policy", "kind") else "right")
    for r in report.results:
        b = busy[r.name]
        summary.add_row(
            r.name, r.policy["kind"] + (f" d={r.policy['degree']}" if r.policy.get("degree") else ""),
            f"{r.tokens_per_s('critical_path').median:,.0f}", f"{b.median:.2f}x", f"{b.low:.2f}-{b.high:.2f}",
            f"{wall[r.name].median:.2f}x", "-" if pred[r.name] is None else f"{pred[r.name]:.2f}x",
        )
    print_table(summary, console, wide=wide)
    for r in report.results[1:]:
        what = "Megatron-style static CP" if r.policy["kind"] == "megatron" else r.policy["kind"]
        p = pred[r.name]
        console.print(
            f"[bold]{name} vs {r.name}[/] ({what}): {busy[r.name].median:.2f}x faster by busy-time critical path "
            f"({busy[r.name].low:.2f}-{busy[r.name].high:.2f} over {report.repeats} rounds), "
            f"{wall[r.name].median:.2f}x by wall-clock"
            + (f"; the cost model predicted {p:.2f}x" if p is not None else ""), highlight=False)
    console.print("[dim]Compared by the busy-time critical path: it measures the plan (a rank's CPU seconds do not "
                  "grow while it waits for a core), so other load and more processes than cores do not decide the "
                  "result; wall-clock agrees with it on a quiet machine with one process per core.[/]")
    if report.oversubscribed:
        console.print(f"[yellow]note:[/] {report.world_size} processes on {report.cores} cores: wall-clock measures "
                      "the OS scheduler, and the profile's collectives were timed with one process per core.")


@app.command()
@cli_errors
def run(
    policy: Optional[str] = typer.Option(
        None, "--policy", "-p", metavar="PATH|KIND",
        help=f"Policy file, or a kind: {spec_help()}. [default: the bundled adaptive policy]"),
    workload: Optional[str] = typer.Option(
        None, "--workload", "-w", metavar="PATH|BUILTIN",
        help="Workload file or built-in (see `fcp-tune workload show`). [default: the bundled workload]"),
    nproc: Optional[int] = typer.Option(
        None, "--nproc", "-n", min=1, metavar="INTEGER",
        help="Local processes. [default: torchrun's world size, else the policy's (2)]"),
    token_budget: Optional[int] = typer.Option(
        None, "--token-budget", "-b", min=1, metavar="INTEGER",
        help="Most tokens one rank holds in one wave (memory). [default: the policy's (1024)]"),
    steps: int = typer.Option(4, "--steps", "-s", min=1, metavar="INTEGER",
                              help="Training steps (batches) per policy, warm-up included."),
    warmup: int = typer.Option(1, "--warmup", min=0, metavar="INTEGER",
                               help="Leading steps run once and excluded from the summary."),
    repeats: int = typer.Option(3, "--repeats", "-r", min=1, metavar="INTEGER",
                                help="Rounds of the measured steps, for median and spread."),
    compare: Optional[List[str]] = typer.Option(
        None, "--compare", "-c", metavar="NAMES",
        help=f"Baselines run interleaved: {spec_help()}, a policy file, or none (repeat or comma-separate). "
             "megatron is Megatron-LM's static CP, mcore-dynamic Megatron-Core's dynamic CP, static and pow2 "
             "fcp-tune's own cost-balanced baselines. [default: megatron, mcore-dynamic, static, pow2]"),
    model: str = typer.Option("tiny", "--model", "-m", metavar="NAME|PATH", help="Model preset (tiny, small) or model YAML."),
    scheme: Optional[str] = typer.Option(None, "--scheme", metavar="NAME",
                                         help=f"Override the attention scheme: {scheme_names()}."),
    global_batch_tokens: Optional[int] = typer.Option(None, "--global-batch-tokens", min=1, metavar="INTEGER",
                                                      help="Override the workload's global batch size."),
    max_len: Optional[int] = typer.Option(
        None, "--max-len", min=1, metavar="INTEGER",
        help="Split documents longer than this. [default: ranks x token budget, as search]"),
    profile: Optional[str] = typer.Option(
        None, "--profile", metavar="PATH|NAME",
        help="Profile that plans and predicts; 'none' for the planner's default cost. [default: the newest "
             "measured on this host, else the bundled cpu-epyc-2proc-tiny]"),
    seed: int = typer.Option(0, "--seed", metavar="INTEGER", help="Seed of the batches and the model."),
    lr: float = typer.Option(1e-3, "--lr", metavar="FLOAT", help="AdamW learning rate."),
    timeout: float = typer.Option(600.0, "--timeout", metavar="SECONDS", help="Seconds before a local run is killed."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    wide: bool = wide_option(),
) -> None:
    """Train steps under a policy on local processes (or torchrun), baselines interleaved."""
    names = split_names(compare)
    compare_list = list(DEFAULT_COMPARE) if compare is None else [c for c in names if c != "none"]
    warmup = min(warmup, steps - 1)  # --steps 1 runs one measured step
    cfg = build_run_config(policy, workload, nproc, steps, warmup, compare_list, model, seed, lr, scheme,
                           global_batch_tokens, profile, token_budget, repeats, max_len)
    from fcp_tune.hardware import usable_cores

    if not under_torchrun() and cfg.world_size > usable_cores():
        err_console.print(f"[yellow]note:[/] {cfg.world_size} processes on {usable_cores()} cores: wall-clock will "
                          "measure the OS scheduler; the comparison uses the busy-time critical path.")
    total = (cfg.warmup + cfg.repeats * (cfg.steps - cfg.warmup)) * len(cfg.policies)
    if under_torchrun():
        report = run_training(cfg, timeout=timeout)
    else:
        with counting_progress(f"training on {cfg.world_size} local processes", total) as on_event:
            report = run_training(cfg, timeout=timeout, on_event=on_event)
    if report is None:  # a non-zero rank under torchrun
        return
    if json_out:
        figures = run_figures(report, cfg.model, cfg.cost)
        print_json({**report.to_dict(), "figures": {k: v.to_dict() for k, v in figures.items()}}, "run", 2)
    else:
        render(report, wide=wide)
        for name, f in run_figures(report, cfg.model, cfg.cost).items():
            mfu_txt = "" if f.mfu is None else f", MFU {f.mfu:.1%}"
            console.print(f"[dim]{name}: {f.tflops_per_gpu:.3g} model TFLOP/s per rank (PaLM convention, attention "
                          f"per sequence, over the busy critical path){mfu_txt}[/]")
            if f.over_device:
                console.print(f"[bold red]{name}: {f.over_device}: not a result on this device[/]")
