"""PNG plots of a search (matplotlib, headless): history, importances, degree map, comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fcp_tune.fileio import save_png
from fcp_tune.search.study import SearchResult
from fcp_tune.workload import Workload


def write_plots(study: Any, result: SearchResult, workload: Workload, out_dir: str | Path) -> list[Path]:
    """Write the four plots into ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import optuna

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        ax = optuna.visualization.matplotlib.plot_optimization_history(study)
        ax.set_ylabel("predicted step time (s)")
        _history_legend(ax, study)
        paths.append(_save(ax.figure, out / "history.png", plt))
        try:
            ax = optuna.visualization.matplotlib.plot_param_importances(study)
            paths.append(_save(ax.figure, out / "importances.png", plt))
        except (RuntimeError, ValueError, ZeroDivisionError):
            pass  # too few distinct trials to rank parameters

    lengths = np.asarray(workload.seqlens)
    fig, ax = plt.subplots(figsize=(8, 4))
    bins = np.logspace(np.log2(max(1, lengths.min())), np.log2(lengths.max() + 1), 40, base=2)
    ax.hist(lengths, bins=bins, weights=lengths / lengths.sum(), color="#9ab", label="share of tokens")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("share of tokens")
    ax2 = ax.twinx()
    policy = result.policy
    edges = [lengths.min()] + [b for b in policy.boundaries if b < lengths.max()] + [lengths.max()]
    degs = list(policy.degrees[: len(edges) - 1])
    xs, ys = [], []
    for i, d in enumerate(degs):
        xs += [edges[i], edges[i + 1]]
        ys += [max(d, policy.min_degree(int(edges[i + 1]))), max(d, policy.min_degree(int(edges[i + 1])))]
    ax2.plot(xs, ys, color="#c33", lw=2, label="CP degree")
    ax2.set_ylabel("CP degree")
    ax2.set_ylim(0, max(ys) * 1.15 + 1)
    ax2.yaxis.get_major_locator().set_params(integer=True)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper right")
    ax.set_title("searched length-to-degree map over the workload")
    paths.append(_save(fig, out / "degree_map.png", plt))

    names = ["searched"] + [b.name for b in result.baselines]
    times = [result.score.step_s] + [b.score.step_s for b in result.baselines]
    if len(names) > 16:  # keep the best few statics
        keep = sorted(range(1, len(names)), key=lambda i: times[i])[:12]
        keep = [0] + sorted(keep, key=lambda i: names[i])
        names, times = [names[i] for i in keep], [times[i] for i in keep]
    fig, ax = plt.subplots(figsize=(8, 4))
    from matplotlib.patches import Patch

    ax.barh(names, times, color=["#c33"] + ["#9ab"] * (len(names) - 1))
    ax.legend([Patch(color="#c33"), Patch(color="#9ab")], ["searched thresholds policy", "baseline"],
              loc="lower right")
    ax.set_xlabel("predicted step time (s)")
    ax.invert_yaxis()
    ax.set_title("searched policy against the baselines")
    paths.append(_save(fig, out / "comparison.png", plt))
    return paths


def _history_legend(ax: Any, study: Any) -> None:
    """Name every mark of Optuna's history plot: its dots, its best-value line, and the grey
    dots it draws for infeasible trials (over the memory budget), which it leaves unlabelled."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    infeasible = sum(1 for t in study.trials if t.constraints and any(v > 0 for v in t.constraints.values()))
    if infeasible:
        handles.append(Line2D([], [], marker="o", linestyle="", color="#cccccc"))
        labels.append(f"infeasible trial: over the memory budget ({infeasible})")
    ax.legend(handles, labels, loc="upper right")


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    try:
        return save_png(fig, path)  # atomic: no reader sees half a PNG
    finally:
        plt.close(fig)
