"""``fcp-tune simulate``: predicted tokens/s of policies at many world sizes."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

from fcp_tune.cli import app
from fcp_tune.cli.common import cli_errors, console, counting_progress, print_json
from fcp_tune.cli.inputs import BATCH_HELP, BUDGET_HELP, ONE_WAVE_HELP, PROFILE_HELP, WORKLOAD_HELP, planning_inputs
from fcp_tune.scale import default_global_batch_tokens
from fcp_tune.cli.tables import print_table, wide_option
from fcp_tune.policy.kinds import spec_help
from fcp_tune.schemes import DEFAULT_SCHEME, scheme_names
from fcp_tune.simulate import SimulateConfig, check_specs
from fcp_tune.simulate import simulate as simulate_policies


@app.command()
@cli_errors
def simulate(
    policies: List[str] = typer.Argument(..., metavar="POLICY...", help=f"Policy files or kinds: {spec_help()}."),
    profile: Optional[str] = typer.Option(None, "--profile", metavar="PATH|NAME", help=PROFILE_HELP),
    workload: Optional[str] = typer.Option(None, "--workload", "-w", metavar="PATH|BUILTIN", help=WORKLOAD_HELP),
    world_sizes: str = typer.Option("8,64,256,1024", "--world-sizes", "-N", metavar="N,N,...", help="Comma-separated world sizes."),
    token_budget: Optional[str] = typer.Option(None, "--token-budget", "-b", metavar="INTEGER|auto", help=BUDGET_HELP + " auto is resolved at each N."),
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="NAME|PATH", help="Model preset or YAML. [default: the profile's]"),
    scheme: str = typer.Option(DEFAULT_SCHEME, "--scheme", metavar="NAME", help=f"Attention scheme: {scheme_names()}."),
    global_batch_tokens: Optional[int] = typer.Option(None, "--global-batch-tokens", metavar="INTEGER", help=BATCH_HELP.format(cpu="N x token budget")),
    one_wave: bool = typer.Option(False, "--one-wave", help=ONE_WAVE_HELP),
    max_len: Optional[int] = typer.Option(None, "--max-len", min=1, metavar="INTEGER", help="Split documents longer than this. [default: N x token budget, as run and search]"),
    batches: int = typer.Option(4, "--batches", min=1, metavar="INTEGER", help="Seeded global batches each prediction averages over."),
    seed: int = typer.Option(0, "--seed", metavar="INTEGER", help="Seed of the batches."),
    max_communicators: Optional[int] = typer.Option(None, "--max-communicators", min=0, metavar="INTEGER", help="Cap per rank for adaptive policies (0: none). [default: the policy's]"),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    wide: bool = wide_option(),
) -> None:
    """Predict tokens/s, efficiency and speedups of POLICY... at each world size."""
    sizes = SimulateConfig.parse_world_sizes(world_sizes)
    per_n = []  # the budget (auto) and the default global batch depend on N
    for n in sizes:
        inputs = planning_inputs(profile, model, n, token_budget)
        gbt = (global_batch_tokens if global_batch_tokens is not None
               else default_global_batch_tokens(n, inputs.token_budget, inputs.profile.hardware, one_wave))
        cfg = SimulateConfig((n,), inputs.token_budget, scheme, batches, seed, max_communicators, gbt)
        wl = inputs.workload(workload, cfg.batch_tokens(n), seed, max_len, world_size=n)
        check_specs(policies, wl, n, inputs.token_budget, scheme)
        per_n.append((inputs, wl))
    prof = per_n[0][0].profile
    rows = []
    with counting_progress("simulating world sizes", len(per_n)) as done:
        for inputs, wl in per_n:
            n = inputs.world_size
            rows += simulate_policies(policies, prof, wl, inputs.model, [n], inputs.token_budget, scheme, batches,
                                      seed, max_communicators)
            done(n)
    if json_out:
        print_json({"rows": [r.to_dict() for r in rows]}, "simulate")
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
