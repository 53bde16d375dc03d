"""One shareable page for a workload on a cluster: searched thresholds, every baseline, plots.

:func:`build_report` searches a thresholds policy (:func:`fcp_tune.search.study.run_search`)
and scores it next to the baselines a user compares with (Megatron-style static, fcp-tune's
best cost-balanced static, Megatron-Core dynamic CP, adaptive FCP); :func:`write_report` writes

- ``report.md``: inputs, the searched length -> degree table, and per policy the predicted
  step time, tokens/s, efficiency against the ideal bound, speedups over the three
  baselines and the communicators it may need;
- ``report.json``: the same numbers (``schema: fcp-tune/report``, ``schema_version: 1``);
- ``histogram.png`` (token share by length, the searched thresholds drawn on it with their
  degrees) and ``step_times.png`` (predicted step time per policy), with matplotlib (the
  ``plots`` extra; :class:`~fcp_tune.errors.FcpTuneError` if it is missing).

All numbers are cost-model predictions from the profile given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from fcp_tune.errors import FcpTuneError
from fcp_tune.fileio import atomic_write_text, save_png
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.policy import Policy
from fcp_tune.profile.schema import Profile
from fcp_tune.search.evaluate import COMPARISONS, Score, reference_scores, speedups_over
from fcp_tune.search.study import SearchConfig, SearchResult, run_search, score_policy
from fcp_tune.workload import Workload

REPORT_SCHEMA = "fcp-tune/report"
REPORT_SCHEMA_VERSION = 1
HEADERS = {"megatron": "vs megatron tuned", "megatron_smallest": "vs megatron smallest",
           "mcore_dynamic": "vs mcore-dynamic", "best_static": "vs best static"}


@dataclass(frozen=True)
class PolicyRow:
    """One policy of the report: its label, what it is, its score and its speedups."""

    name: str
    what: str
    score: Score
    speedups: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "what": self.what, **self.score.to_dict(), "speedups": dict(self.speedups)}


@dataclass(frozen=True)
class Report:
    """Everything the page shows."""

    title: str
    inputs: dict[str, Any]
    policy: Policy
    rows: tuple[PolicyRow, ...]
    references: dict[str, str]  # comparison key -> baseline name
    seqlens: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA, "schema_version": REPORT_SCHEMA_VERSION, "title": self.title,
            "inputs": self.inputs, "policy": self.policy.to_dict(), "references": self.references,
            "rows": [r.to_dict() for r in self.rows],
        }


def _what(kind: str) -> str:
    return {
        "searched": "searched thresholds policy (this report)",
        "megatron": "Megatron-LM static CP (token packing, ring/p2p)",
        "mcore-dynamic": "Megatron-Core dynamic CP (BalancedCPScheduler, ring/p2p)",
        "static": "fcp-tune cost-balanced static",
        "pow2": "fcp-tune power-of-two, cost-balanced",
        "adaptive": "FCP, per batch",
    }.get(kind, kind)


def rows_from_search(result: SearchResult) -> tuple[tuple[PolicyRow, ...], dict[str, str]]:
    """Report rows (searched, adaptive, the reference baselines) and the reference names."""
    scores = list(result.baselines)
    refs = reference_scores(scores)
    keep = ["adaptive"] + [refs[k][0] for k in COMPARISONS if k in refs]
    picked = [("searched", "searched", result.score)] + [(b.name, b.policy.kind, b.score) for b in scores if b.name in keep]
    rows = tuple(PolicyRow(n, _what(kind), s, speedups_over(s.step_s, refs)) for n, kind, s in picked)
    return rows, {k: v[0] for k, v in refs.items()}


def build_report(
    cfg: SearchConfig,
    profile: Profile,
    workload: Workload,
    model: ModelConfig,
    on_trial: Optional[Callable[[int, int, float], None]] = None,
    policy: Optional[Policy] = None,
) -> Report:
    """Search (``cfg``; a ``--storage`` study that already has ``cfg.trials`` trials is not
    searched again), or score an existing ``policy`` without searching; score the
    baselines, and gather the page's content."""
    if policy is not None:
        result = score_policy(cfg, profile, workload, model, policy)
    else:
        result, _, _ = run_search(cfg, profile, workload, model, on_trial=on_trial)
    rows, refs = rows_from_search(result)
    inputs = {
        "profile": profile.label, "workload": workload.name, "sequences": len(workload.seqlens),
        "global_batch_tokens": workload.global_batch_tokens, "world_size": cfg.world_size,
        "token_budget": cfg.token_budget, "model": model.name, "scheme": cfg.scheme, "trials": result.trials_completed,
        "batches": cfg.batches, "seed": cfg.seed,
    }
    title = f"fcp-tune report: {workload.name} on {cfg.world_size} ranks"
    return Report(title, inputs, result.policy, rows, refs, tuple(workload.seqlens))


def render_markdown(report: Report, plots: list[str]) -> str:
    """The Markdown page (``plots``: PNG file names next to it)."""
    p = report.policy
    lines = [f"<!-- {REPORT_SCHEMA} schema_version {REPORT_SCHEMA_VERSION} -->", f"# {report.title}", ""]
    lines += ["Predicted by the cost model (not measured). Inputs: " +
              ", ".join(f"{k} `{v}`" for k, v in report.inputs.items()) + ".", ""]
    lines += ["## Searched policy", "", "| sequence length | CP degree |", "|---|---:|"]
    lo = 1
    for b, d in zip(list(p.boundaries) + [None], p.degrees):
        lines.append(f"| {lo} .. {b} | {d} |" if b is not None else f"| >= {lo} | {d} |")
        lo = (b or 0) + 1
    lines += ["", "## Policies", ""]
    heads = [HEADERS[k] for k in COMPARISONS]
    lines.append("| policy | what | step s | tokens/s | TFLOP/s per GPU | MFU | efficiency | " + " | ".join(heads)
                 + " | communicators | peak GiB |")
    lines.append("|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(heads) + "---:|---:|")
    for r in report.rows:
        ups = " | ".join(f"{r.speedups[k]:.2f}x" if k in r.speedups else "-" for k in COMPARISONS)
        sc = r.score
        mfu_txt = "-" if sc.mfu is None else f"{sc.mfu:.1%}"
        gib = f"{sc.peak_memory_bytes / 2**30:.1f}"
        if not sc.fits:
            gib += f" (over the device's {sc.device_memory_bytes / 2**30:.0f}: not a result)"
        lines.append(f"| {r.name} | {r.what} | {sc.step_s:.4g} | {sc.tokens_per_s:,.0f} | {sc.tflops_per_gpu:.0f} | "
                     f"{mfu_txt} | {sc.efficiency:.3f} | {ups} | {sc.communicators} | {gib} |")
    lines += [""]
    lines += [f"- **{HEADERS[k]}**: speedup over {COMPARISONS[k]} (`{report.references[k]}`)."
              for k in COMPARISONS if k in report.references]
    lines += ["- **efficiency**: the ideal bound (each sequence's work at its cheapest degree that fits the "
              "token budget, spread perfectly over all ranks, plus gradient sync and optimizer) over the "
              "predicted step time; 1.0 is unbeatable.",
              "- **communicators**: process groups of more than one rank the policy may need.",
              "- **MFU**: model FLOPs (PaLM convention, attention counted per sequence as the sum of L^2) per "
              "second per GPU over the device's dense bf16 peak; **peak GiB**: predicted peak memory per GPU.", ""]
    for name in plots:
        lines += [f"![{name}]({name})", ""]
    return "\n".join(lines)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise FcpTuneError("plots need matplotlib: pip install 'fcp-tune[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_histogram(report: Report, path: Path) -> Path:
    """Token share by length (log2 bins) with the searched thresholds and their degrees."""
    import numpy as np

    plt = _pyplot()
    lengths = np.asarray(report.seqlens)
    fig, ax = plt.subplots(figsize=(8, 4))
    bins = np.logspace(np.log2(max(1, lengths.min())), np.log2(lengths.max() + 1), 40, base=2)
    ax.hist(lengths, bins=bins, weights=lengths / lengths.sum(), color="#9ab")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("share of tokens")
    p = report.policy
    edges = [int(lengths.min())] + [b for b in p.boundaries if b < lengths.max()] + [int(lengths.max())]
    top = ax.get_ylim()[1]
    for i, d in enumerate(p.degrees[: len(edges) - 1]):
        if i:
            ax.axvline(edges[i], color="#c33", lw=1.5)
        mid = (edges[i] * edges[i + 1]) ** 0.5
        ax.text(mid, top * 0.92, f"CP {d}", color="#c33", ha="center")
    ax.set_title("workload (share of tokens by length) and the searched thresholds")
    return _save(plt, fig, path)


def plot_step_times(report: Report, path: Path) -> Path:
    """Predicted step time per policy (horizontal bars)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = [r.name for r in report.rows]
    ax.barh(names, [r.score.step_s for r in report.rows], color=["#c33"] + ["#9ab"] * (len(names) - 1))
    ax.invert_yaxis()
    ax.set_xlabel("predicted step time (s)")
    ax.set_title("predicted step time per policy")
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    try:
        return save_png(fig, path)  # atomic: no reader sees half a PNG
    finally:
        plt.close(fig)


def write_report(report: Report, out_dir: str | Path) -> list[Path]:
    """Write ``report.md``, ``report.json`` and the two PNGs into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs = [plot_histogram(report, out / "histogram.png"), plot_step_times(report, out / "step_times.png")]
    md = atomic_write_text(out / "report.md", render_markdown(report, [p.name for p in pngs]))
    js = atomic_write_text(out / "report.json", json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return [md, js, *pngs]
