"""``fcp-tune simulate``: predicted tokens/s of policies at many world sizes."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

from fcp_tune.cli import app
from fcp_tune.cli.common import cli_errors, console, counting_progress, print_json
from fcp_tune.cli.inputs import BUDGET_HELP, PROFILE_HELP, WORKLOAD_HELP, planning_inputs
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
    token_budget: Optional[int] = typer.Option(None, "--token-budget", "-b", min=1, metavar="INTEGER", help=BUDGET_HELP),
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="NAME|PATH", help="Model preset or YAML. [default: the profile's]"),
    scheme: str = typer.Option(DEFAULT_SCHEME, "--scheme", metavar="NAME", help=f"Attention scheme: {scheme_names()}."),
    global_batch_tokens: Optional[int] = typer.Option(None, "--global-batch-tokens", metavar="INTEGER", help="Global batch. [default: N x token budget]"),
    max_len: Optional[int] = typer.Option(None, "--max-len", min=1, metavar="INTEGER", help="Split documents longer than this. [default: N x token budget, as run and search]"),
    batches: int = typer.Option(4, "--batches", min=1, metavar="INTEGER", help="Seeded global batches each prediction averages over."),
    seed: int = typer.Option(0, "--seed", metavar="INTEGER", help="Seed of the batches."),
    max_communicators: Optional[int] = typer.Option(None, "--max-communicators", min=0, metavar="INTEGER", help="Cap per rank for adaptive policies (0: none). [default: the policy's]"),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    wide: bool = wide_option(),
) -> None:
    """Predict tokens/s, efficiency and speedups of POLICY... at each world size."""
    inputs = planning_inputs(profile, model, None, token_budget)
    prof, cfg_model, token_budget = inputs.profile, inputs.model, inputs.token_budget
    cfg = SimulateConfig(SimulateConfig.parse_world_sizes(world_sizes), token_budget, scheme, batches, seed,
                         max_communicators, global_batch_tokens)
    largest = max(cfg.world_sizes)
    check_specs(policies, inputs.workload(workload, cfg.batch_tokens(largest), seed, max_len, world_size=largest),
                largest, token_budget, scheme)
    rows = []
    with counting_progress("simulating world sizes", len(cfg.world_sizes)) as done:
        for n in cfg.world_sizes:
            wl = inputs.workload(workload, cfg.batch_tokens(n), seed, max_len, world_size=n)
            rows += simulate_policies(policies, prof, wl, cfg_model, [n], token_budget, scheme, batches, seed,
                                      max_communicators)
            done(n)
    if json_out:
        print_json({"rows": [r.to_dict() for r in rows]}, "simulate")
        return
    t = Table(title=f"predicted with profile '{prof.label}'")
    for col in ("N", "policy", "step s", "tok/s", "eff", "vs mega", "vs stat", "vs pow2", "comms", "GiB"):
        t.add_column(col, justify="left" if col == "policy" else "right")

    def x(v: Optional[float]) -> str:
        return "-" if v is None else f"{v:.2f}x"

    for r in rows:
        if r.step_s is None:
            t.add_row(str(r.world_size), r.policy, *["-"] * 8)
            continue
        t.add_row(str(r.world_size), r.policy, f"{r.step_s:.4g}", f"{r.tokens_per_s:,.0f}", f"{r.efficiency:.2f}",
                  x(r.speedup_vs_megatron), x(r.speedup_vs_best_static), x(r.speedup_vs_pow2),
                  f"{r.communicators}/{r.comms_per_rank}", f"{r.peak_memory_gib:.1f}")
    print_table(t, console, keys=2, wide=wide)
    for n in sorted({r.world_size for r in rows}):
        r = next(r for r in rows if r.world_size == n)
        console.print(f"[dim]N={n}: vs mega = over Megatron-style static ({r.megatron}); vs stat = over "
                      f"fcp-tune's best cost-balanced static ({r.best_static}); vs pow2 = over "
                      f"Megatron-Core dynamic CP; eff = ideal bound / step[/]")
    console.print("[dim]comms: communicators the policy may create in total / the most one rank belongs to[/]")
    notes = [f"N={r.world_size} {r.policy}: {r.note}" for r in rows if r.note]
    for n in notes:
        console.print(f"[dim]skipped {n}[/]")
