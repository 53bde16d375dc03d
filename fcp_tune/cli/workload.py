"""``fcp-tune workload show``: load a workload and render its length statistics."""

from __future__ import annotations

from typing import Optional

import typer
from rich.bar import Bar
from rich.table import Table

from fcp_tune.cli import app
from fcp_tune.cli.common import cli_errors, console, print_json
from fcp_tune.cli.tables import print_table, wide_option
from fcp_tune.workload import WorkloadStats, load_workload

workload_app = typer.Typer(help="Inspect sequence-length workloads.", no_args_is_help=True)
app.add_typer(workload_app, name="workload")

_MAX_BAR_WIDTH = 30


def _fmt_len(n: int) -> str:
    """Lengths as 64K / 1M when they are exact powers of 1024 multiples, else with separators."""
    for unit, size in (("M", 1 << 20), ("K", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n:,}"


def _summary_table(name: str, stats: WorkloadStats, budget: int, max_len: int | None) -> Table:
    table = Table(title=f"workload {name}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [("sequences", f"{stats.count:,}"), ("tokens", f"{stats.total_tokens:,}"),
            ("mean", f"{stats.mean:,.1f}"), ("min", f"{stats.min:,}"), ("p50", f"{stats.p50:,}"),
            ("p90", f"{stats.p90:,}"), ("p99", f"{stats.p99:,}"), ("max", f"{stats.max:,}"),
            ("global batch tokens", f"{budget:,}"), ("max_len", "none" if max_len is None else f"{max_len:,}")]
    for row in rows:
        table.add_row(*row)
    return table


def _tail_table(stats: WorkloadStats) -> Table:
    table = Table(title="share in sequences longer than", title_justify="left")
    table.add_column("length", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("attention FLOPs", justify="right")
    for t in stats.above:
        table.add_row(f"> {_fmt_len(t.length)}", f"{t.token_share:6.1%}", f"{t.flops_share:6.1%}")
    return table


def _histogram_table(stats: WorkloadStats, width: int) -> Table:
    """Counts and token shares per log2 bin, with bars sized to fit ``width`` columns."""
    bar = max(6, min(_MAX_BAR_WIDTH, (width - 44) // 2))
    table = Table(title="histogram (log2 bins)", title_justify="left")
    table.add_column("length", justify="right", no_wrap=True)
    table.add_column("seqs", justify="right", no_wrap=True)
    table.add_column("", width=bar, no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("", width=bar, no_wrap=True)
    top_count = max(b.count for b in stats.histogram)
    top_share = max(b.token_share for b in stats.histogram)
    for b in stats.histogram:
        table.add_row(f"{_fmt_len(b.lo)}-{_fmt_len(b.hi)}", f"{b.count:,}",
                      Bar(top_count, 0, b.count, width=bar, color="cyan"),
                      f"{b.token_share:6.1%}",
                      Bar(top_share, 0, b.token_share, width=bar, color="magenta"))
    return table


@workload_app.command("show")
@cli_errors
def show(
    spec: str = typer.Argument(..., help="A lengths file, .json/.yaml/.npy/.jsonl, a directory, or a built-in "
                               "(lognormal, bimodal, uniform, e.g. 'lognormal:median=2048,sigma=1.5')."),
    max_len: Optional[int] = typer.Option(None, "--max-len", help="Maximum context length in tokens."),
    long_docs: str = typer.Option("split", "--long-docs", help="Longer documents: split or truncate."),
    global_batch_tokens: Optional[int] = typer.Option(None, "--global-batch-tokens",
                                                      help="Tokens per global batch."),
    chars_per_token: float = typer.Option(4.0, "--chars-per-token", help="Characters per token for text."),
    field: Optional[str] = typer.Option(None, "--field", help="Integer token-count field of a .jsonl file."),
    text_field: Optional[str] = typer.Option(None, "--text-field", help="Text field of a .jsonl file."),
    glob: str = typer.Option("**/*.txt", "--glob", help="Files of a directory workload."),
    seed: int = typer.Option(0, "--seed", help="Seed of built-in workloads."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary and stats as JSON."),
    wide: bool = wide_option(),
) -> None:
    """Show a workload's length statistics: percentiles, tail shares and a log2 histogram."""
    workload = load_workload(spec, global_batch_tokens=global_batch_tokens, max_len=max_len,
                             long_docs=long_docs, chars_per_token=chars_per_token, field=field,
                             text_field=text_field, glob=glob, seed=seed)
    if as_json:
        print_json(workload.to_dict(), "workload")
        return
    stats = workload.stats()
    print_table(_summary_table(workload.name, stats, workload.global_batch_tokens, workload.max_len), console,
                wide=wide)
    if stats.above:
        print_table(_tail_table(stats), console, wide=wide)
    print_table(_histogram_table(stats, console.width), console, wide=wide)
    console.print(f"source: {workload.source}", style="dim", markup=False, highlight=False)
