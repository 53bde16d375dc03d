"""Search targets and a scale table on the bundled 64-GPU H100 reference profile (predictions).

    python benchmarks/search.py                 # both workloads, 200 trials, scale table 8..1024
    python benchmarks/search.py --trials 50 --sizes 8 64

For each workload: ``fcp-tune search`` (TPE, seed 0, 200 trials, 5 ranges) at N = 64, a
per-rank budget of 16K tokens and a global batch of N x 16K tokens, llama3-8b shapes; the
searched policy's predicted step time against the best static degree (dividing N), pow2
and adaptive; the search's wall time. Then the searched policy and the baselines at every
world size of ``--sizes`` (``fcp-tune simulate``; global batch N x 16K). All numbers are
cost-model predictions from a profile derived from public figures, not measurements.
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time
from pathlib import Path

from fcp_tune.fileio import file_sha256
from fcp_tune.modelcfg import PRESETS
from fcp_tune.policy import save_policy
from fcp_tune.profile.schema import load_profile
from fcp_tune.search.simulate import simulate
from fcp_tune.search.study import SearchConfig, run_search
from fcp_tune.workload import load_workload

PROFILE = "profiles/h100-64-reference.yaml"
WORKLOADS = {
    # pre-training long tail: median 4K, a few sequences up to 128K
    "long-tail": "lognormal:median=4096,sigma=1.2,max=131072,n=20000",
    # extremely unbalanced: mostly ~1K-token documents plus rare 64K-128K ones
    "extreme": "bimodal:short_mean=1024,long_mean=98304,long_frac=0.01,sigma=0.35,max=131072,n=20000",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--budget", type=int, default=16384)
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 64, 256, 1024])
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    prof = load_profile(PROFILE)
    model = PRESETS["llama3-8b"]
    out: dict = {"date": datetime.date.today().isoformat(), "profile": PROFILE, "targets": [], "scale": []}
    for name in a.workloads:
        wl = load_workload(WORKLOADS[name], global_batch_tokens=64 * a.budget)
        cfg = SearchConfig(world_size=64, token_budget=a.budget, trials=a.trials, seed=0, ranges=5, batches=8,
                           profile_sha256=file_sha256(PROFILE), workload_sha256=wl.seqlens_sha256(),
                           command=f"python benchmarks/search.py --trials {a.trials}")
        t0 = time.perf_counter()
        result, _, _ = run_search(cfg, prof, wl, model)
        wall = time.perf_counter() - t0
        sp = result.speedups
        out["targets"].append({
            "workload": name, "trials": result.trials_completed, "search_wall_s": wall,
            "policy": {"boundaries": list(result.policy.boundaries), "degrees": list(result.policy.degrees)},
            "step_s": result.score.step_s, "best_static": result.policy.metadata["predicted"]["best_static"],
            "vs_best_static": sp["best_static"], "vs_pow2": sp["pow2"], "vs_adaptive": sp["adaptive"],
        })
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "searched.yaml"
            save_policy(result.policy, path)
            for n in a.sizes:
                wl_n = load_workload(WORKLOADS[name], global_batch_tokens=n * a.budget)
                rows = simulate([str(path), "pow2", "adaptive"], prof, wl_n, model, [n], a.budget, batches=4)
                for r in rows:
                    out["scale"].append({**r.to_dict(), "workload": name,
                                         "policy": "searched@64" if r.policy == str(path) else r.policy})
    if a.json:
        print(json.dumps(out, indent=2))
        return
    print(f"# search targets, {PROFILE} (reference, not measured), llama3-8b, N=64, budget {a.budget}, {out['date']}")
    print("| workload | trials | search wall s | searched (boundaries -> degrees) | best static | vs best static | vs pow2 | vs adaptive |")
    print("|---|---:|---:|---|---|---:|---:|---:|")
    for t in out["targets"]:
        pol = f"{t['policy']['boundaries']} -> {t['policy']['degrees']}"
        print(f"| {t['workload']} | {t['trials']} | {t['search_wall_s']:.1f} | {pol} | {t['best_static']} | "
              f"{t['vs_best_static']:.2f}x | {t['vs_pow2']:.2f}x | {t['vs_adaptive']:.3f}x |")
    print()
    print("| workload | N | policy | step s | tokens/s | efficiency | vs best static | best static | communicators |")
    print("|---|---:|---|---:|---:|---:|---:|---|---:|")
    for r in out["scale"]:
        if r["step_s"] is None:
            print(f"| {r['workload']} | {r['world_size']} | {r['policy']} | - | - | - | - | {r['best_static']} | - |")
            continue
        print(f"| {r['workload']} | {r['world_size']} | {r['policy']} | {r['step_s']:.3f} | {r['tokens_per_s']:,.0f} | "
              f"{r['efficiency']:.2f} | {r['speedup_vs_best_static']:.2f}x | {r['best_static']} | {r['communicators']} |")


if __name__ == "__main__":
    main()
