"""Headline figures on the 64-GPU H100 reference profile (cost-model predictions, not measurements).

    python benchmarks/search.py                          # 4 workloads, 200 trials, N = 64 and 1024
    python benchmarks/search.py --trials 60 --sizes 64 --workloads long-tail --fill 0.5
    python benchmarks/search.py --gap --workloads long-tail python-stdlib --fills 1.0 0.5   # vs adaptive

For each workload: ``fcp-tune search`` (TPE, seed 0, 5 ranges) at N = 64, a per-rank budget
of 16K tokens and a global batch of ``fill x N x 16K`` tokens, llama3-8b shapes; then the
searched policy and the baselines at every world size of ``--sizes`` (``fcp-tune
simulate``, same fill). Every row shows the predicted step time, the efficiency against
the ideal bound (each sequence's work at its cheapest fitting degree, spread perfectly over
all ranks) and the speedups over the three baselines users compare with:
``megatron`` (Megatron-LM static CP: token packing, smallest degree dividing N that fits),
fcp-tune's best cost-balanced ``static`` degree, and ``mcore-dynamic`` (Megatron-Core dynamic CP).
For the headline figures on configurations that fit the device see ``benchmarks/headline.py``.
The profile is derived from public figures (docs/PROFILES.md), not measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

from fcp_tune.fileio import file_sha256
from fcp_tune.modelcfg import PRESETS
from fcp_tune.policy import save_policy
from fcp_tune.profile.schema import load_profile
from fcp_tune.search.study import SearchConfig, run_search
from fcp_tune.simulate import simulate
from fcp_tune.workload import load_workload

PROFILE = "profiles/h100-64-reference.yaml"
WORKLOADS = {
    # pre-training long tail: median 4K, a few sequences up to 128K
    "long-tail": "lognormal:median=4096,sigma=1.2,max=131072,n=20000",
    # extremely unbalanced: mostly ~1K-token documents plus rare 64K-128K ones
    "extreme": "bimodal:short_mean=1024,long_mean=98304,long_frac=0.01,sigma=0.35,max=131072,n=20000",
    # real text measured on this machine (workloads/make_real.py, docs/WORKLOADS.md)
    "python-stdlib": "workloads/python-stdlib.yaml",
    "manpages": "workloads/manpages.yaml",
}
SIM_POLICIES = ("megatron", "static", "mcore-dynamic", "adaptive")


def run(trials: int, budget: int, sizes: list[int], workloads: list[str], fill: float, batches: int) -> dict:
    """Search at N = 64 and simulate at ``sizes``; returns the JSON-able results."""
    prof = load_profile(PROFILE)
    model = PRESETS["llama3-8b"]
    out: dict = {"date": datetime.date.today().isoformat(), "profile": PROFILE, "fill": fill,
                 "targets": [], "scale": []}
    for name in workloads:
        wl = load_workload(WORKLOADS[name], global_batch_tokens=int(fill * 64 * budget))
        cfg = SearchConfig(world_size=64, token_budget=budget, trials=trials, seed=0, ranges=5, batches=8,
                           profile_sha256=file_sha256(PROFILE), workload_sha256=wl.seqlens_sha256(),
                           command=f"python benchmarks/search.py --trials {trials}")
        t0 = time.perf_counter()
        result, _, _ = run_search(cfg, prof, wl, model)
        wall = time.perf_counter() - t0
        print(f"{name}: searched in {wall:.0f} s", file=sys.stderr, flush=True)
        sp = result.speedups
        pred = result.policy.metadata["predicted"]
        out["targets"].append({
            "workload": name, "trials": result.trials_completed, "search_wall_s": wall,
            "policy": {"boundaries": list(result.policy.boundaries), "degrees": list(result.policy.degrees)},
            "step_s": result.score.step_s, "efficiency": result.score.efficiency,
            "megatron": pred["megatron"], "best_static": pred["best_static"],
            "vs_megatron": sp.get("megatron"), "vs_best_static": sp["best_static"], "vs_mcore_dynamic": sp.get("mcore_dynamic"),
            "vs_adaptive": sp["adaptive"],
        })
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "searched.yaml"
            save_policy(result.policy, path)
            for n in sizes:
                wl_n = load_workload(WORKLOADS[name], global_batch_tokens=int(fill * n * budget))
                rows = simulate([str(path), *SIM_POLICIES], prof, wl_n, model, [n], budget, batches=batches)
                print(f"{name}: simulated N={n} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
                for r in rows:
                    out["scale"].append({**r.to_dict(), "workload": name,
                                         "policy": "searched@64" if r.policy == str(path) else r.policy})
    return out


def gap_rows(trials: int, budget: int, workloads: list[str], fills: list[float], seed: int = 0) -> list[dict]:
    """For each workload and fill: search at N = 64, then the searched table's predicted step
    against adaptive's on the same evaluation batches, and ``search``'s recommendation."""
    prof = load_profile(PROFILE)
    model = PRESETS["llama3-8b"]
    rows = []
    for name in workloads:
        for fill in fills:
            wl = load_workload(WORKLOADS[name], global_batch_tokens=int(fill * 64 * budget))
            cfg = SearchConfig(world_size=64, token_budget=budget, trials=trials, seed=seed, ranges=5, batches=8,
                               profile_sha256=file_sha256(PROFILE), workload_sha256=wl.seqlens_sha256(),
                               command=f"python benchmarks/search.py --gap --trials {trials}")
            t0, c0 = time.perf_counter(), time.process_time()
            result, _, _ = run_search(cfg, prof, wl, model)
            rec = result.recommendation
            rows.append({"workload": name, "fill": fill, "trials": result.trials_completed,
                         "search_wall_s": time.perf_counter() - t0, "search_cpu_s": time.process_time() - c0,
                         "policy": {"boundaries": list(result.policy.boundaries),
                                    "degrees": list(result.policy.degrees)},
                         "searched_step_s": rec["searched_step_s"], "adaptive_step_s": rec["adaptive_step_s"],
                         "gap": rec["searched_vs_adaptive"], "recommendation": rec["policy"],
                         "advice": result.advice()})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def render_gap(rows: list[dict]) -> None:
    print(f"# {PROFILE} (reference, not measured), llama3-8b, N = 64, budget 16K, searched table vs adaptive")
    print("| workload | fill | trials | search CPU s | searched (boundaries -> degrees) | searched step s "
          "| adaptive step s | gap | within 3 % | recommendation |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---|---|")
    for r in rows:
        pol = f"{r['policy']['boundaries']} -> {r['policy']['degrees']}"
        print(f"| {r['workload']} | {r['fill']} | {r['trials']} | {r['search_cpu_s']:.0f} | {pol} | "
              f"{r['searched_step_s']:.3f} | {r['adaptive_step_s']:.3f} | {100 * r['gap']:+.1f} % | "
              f"{'yes' if r['gap'] <= 0.03 else 'no'} | {r['recommendation']} |")


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def render(out: dict) -> None:
    """Markdown tables of the targets and the scale rows."""
    print(f"# {PROFILE} (reference, not measured), llama3-8b, budget 16K, global batch {out['fill']} x N x 16K, "
          f"{out['date']}")
    print("| workload | trials | search s | searched (boundaries -> degrees) | eff | vs megatron | vs best static "
          "| vs mcore-dynamic | vs adaptive |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for t in out["targets"]:
        pol = f"{t['policy']['boundaries']} -> {t['policy']['degrees']}"
        print(f"| {t['workload']} | {t['trials']} | {t['search_wall_s']:.0f} | {pol} | {t['efficiency']:.3f} | "
              f"{_x(t['vs_megatron'])} ({t['megatron']}) | {_x(t['vs_best_static'])} ({t['best_static']}) | "
              f"{_x(t['vs_mcore_dynamic'])} | {t['vs_adaptive']:.3f}x |")
    print()
    print("| workload | N | policy | step s | efficiency | vs megatron | vs best static | vs mcore-dynamic | communicators |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in out["scale"]:
        if r["step_s"] is None:
            print(f"| {r['workload']} | {r['world_size']} | {r['policy']} | - | - | - | - | - | - |")
            continue
        print(f"| {r['workload']} | {r['world_size']} | {r['policy']} | {r['step_s']:.3f} | {r['efficiency']:.3f} | "
              f"{_x(r['speedup_vs_megatron'])} | {_x(r['speedup_vs_best_static'])} ({r['best_static']}) | "
              f"{_x(r['speedup_vs_mcore_dynamic'])} | {r['communicators']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--budget", type=int, default=16384)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 1024])
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--fill", type=float, default=1.0, help="global batch = fill x N x budget tokens")
    ap.add_argument("--batches", type=int, default=4, help="seeded batches per simulated row")
    ap.add_argument("--gap", action="store_true", help="only search at N = 64 and report the gap to adaptive")
    ap.add_argument("--fills", type=float, nargs="+", default=[1.0, 0.5], help="fills of --gap")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.gap:
        rows = gap_rows(a.trials, a.budget, a.workloads, a.fills)
        print(json.dumps(rows, indent=2)) if a.json else render_gap(rows)
        return
    out = run(a.trials, a.budget, a.sizes, a.workloads, a.fill, a.batches)
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        render(out)


if __name__ == "__main__":
    main()
