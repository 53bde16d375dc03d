"""``fcp-tune simulate``: predicted tokens/s of policies at many world sizes."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

from fcp_tune.cli import app
from fcp_tune.cli.common import cli_errors, console, print_json
from fcp_tune.cli.tables import print_table, wide_option
from fcp_tune.modelcfg import load_model_config
from fcp_tune.policy.kinds import spec_help
from fcp_tune.profile.schema import load_profile
from fcp_tune.scale import default_global_batch_tokens, resolve_token_budget
from fcp_tune.schemes import DEFAULT_SCHEME, scheme_names
from fcp_tune.simulate import SimulateConfig, check_specs
from fcp_tune.simulate import simulate as simulate_policies
from fcp_tune.workload import load_workload


@app.command()
@cli_errors
def simulate(
    policies: List[str] = typer.Argument(..., help=f"Policy files or kinds: {spec_help()}."),
    profile: str = typer.Option(..., "--profile", help="Profile YAML."),
    workload: str = typer.Option(..., "--workload", "-w", help="Workload file or built-in."),
    world_sizes: str = typer.Option("8,64,256,1024", "--world-sizes", "-N", help="Comma-separated world sizes."),
    token_budget: str = typer.Option(..., "--token-budget", "-b", help="Max tokens per rank per wave, or auto: the largest whose predicted memory fits the device (per N)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model preset or YAML (default: the profile's)."),
    scheme: str = typer.Option(DEFAULT_SCHEME, "--scheme", help=f"Attention scheme: {scheme_names()}."),
    global_batch_tokens: Optional[int] = typer.Option(None, "--global-batch-tokens", help="Global batch. Default on a GPU profile: a pre-training batch at that scale, max(4M x max(1, N/256), 2 x N x budget) tokens; on a CPU profile: N x budget."),
    one_wave: bool = typer.Option(False, "--one-wave", help="Global batch N x budget (one micro-batch per replica) instead of the default."),
    batches: int = typer.Option(4, "--batches", min=1),
    seed: int = typer.Option(0, "--seed"),
    max_communicators: Optional[int] = typer.Option(None, "--max-communicators", min=0, help="Cap per rank for adaptive policies (0: none; default: the policy's)."),
    json_out: bool = typer.Option(False, "--json"),
    wide: bool = wide_option(),
) -> None:
    """Predict tokens/s, efficiency and speedups of POLICIES at each world size."""
    sizes = SimulateConfig.parse_world_sizes(world_sizes)
    prof = load_profile(profile)
    cfg_model = load_model_config(model) if model else prof.model
    per_n = []  # (config, workload) per world size: the budget (auto) and the global batch depend on N
    for n in sizes:
        budget = resolve_token_budget(token_budget, cfg_model, n, prof.hardware, 0)
        gbt = (global_batch_tokens if global_batch_tokens is not None
               else default_global_batch_tokens(n, budget, prof.hardware, one_wave))
        cfg = SimulateConfig((n,), budget, scheme, batches, seed, max_communicators, gbt)
        wl = load_workload(workload, global_batch_tokens=cfg.batch_tokens(n), seed=seed)
        check_specs(policies, wl, n, budget, scheme)
        per_n.append((cfg, wl))
    rows = []
    with console.status("simulating") if not json_out else _null():
        for cfg, wl in per_n:
            rows += simulate_policies(policies, prof, wl, cfg_model, list(cfg.world_sizes), cfg.token_budget, scheme,
                                      batches, seed, max_communicators)
    if json_out:
        print_json([r.to_dict() for r in rows])
        return
    t = Table(title=f"predicted with profile '{prof.label}'")
    cols = ("N", "policy", "step s", "tok/s", "TFLOP/s", "MFU", "eff", "vs mega", "vs mega min", "vs mcore-dyn",
            "vs stat", "comms", "GiB")
    for col in cols:
        t.add_column(col, justify="left" if col == "policy" else "right")

    def x(v: Optional[float]) -> str:
        return "-" if v is None else f"{v:.2f}x"

    for r in rows:
        if r.step_s is None:
            t.add_row(str(r.world_size), r.policy, *["-"] * (len(cols) - 2))
            continue
        gib = f"{r.peak_memory_gib:.1f}" + ("" if r.fits else f" > {r.device_memory_gib:.0f} !")
        t.add_row(str(r.world_size), r.policy, f"{r.step_s:.4g}", f"{r.tokens_per_s:,.0f}", f"{r.tflops_per_gpu:.0f}",
                  "-" if r.mfu is None else f"{r.mfu:.1%}", f"{r.efficiency:.2f}",
                  x(r.speedup_vs_megatron), x(r.speedup_vs_megatron_smallest), x(r.speedup_vs_mcore_dynamic),
                  x(r.speedup_vs_best_static), f"{r.communicators}/{r.comms_per_rank}", gib)
    print_table(t, console, keys=2, wide=wide)
    for n in sorted({r.world_size for r in rows}):
        r = next(r for r in rows if r.world_size == n)
        console.print(f"[dim]N={n} (budget {r.token_budget} tokens/rank, global batch {r.global_batch_tokens:,} "
                      f"tokens): vs mega = over Megatron-LM static CP tuned ({r.megatron}, ring/p2p); vs mega min = "
                      f"at its smallest fitting degree ({r.megatron_smallest}); vs mcore-dyn = over Megatron-Core "
                      f"dynamic CP; vs stat = over fcp-tune's best cost-balanced static ({r.best_static}); "
                      f"eff = ideal bound / step; MFU: model FLOPs (PaLM, attention per sequence) / dense bf16 "
                      f"peak[/]")
    for r in rows:
        if r.fits is False:
            console.print(f"[bold red]N={r.world_size} {r.policy}: {r.over_device}: not a result[/]")
    console.print("[dim]comms: communicators the policy may create in total / the most one rank belongs to[/]")
    notes = [f"N={r.world_size} {r.policy}: {r.note}" for r in rows if r.note]
    for n in notes:
        console.print(f"[dim]skipped {n}[/]")


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
