"""Benchmark the executor: FCP policies against the baselines, side by side, on local CPU processes.

    python benchmarks/executor.py                    # 2 processes, long-tail and bimodal workloads
    python benchmarks/executor.py --nproc 4          # 4 processes: compare busy time, not wall time
    python benchmarks/executor.py --json

For each workload the thresholds policy is first searched (``fcp_tune.search``, 60 trials)
with the cost model of the bundled CPU profile, then ``thresholds`` and ``adaptive`` train
next to ``static`` (the smallest degree dividing N that fits the longest sequence) and
``pow2``, interleaved step by step in one process set (``fcp_tune.executor.run_training``).
tokens/s is over the measured steps (warm-up excluded); on a 2-core machine, wall-clock
comparisons mean something only up to 2 processes, so busy time per rank is reported too.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import statistics

from fcp_tune.executor import RunConfig, run_training
from fcp_tune.fileio import file_sha256
from fcp_tune.modelcfg import PRESETS
from fcp_tune.policy import Policy
from fcp_tune.policy.specs import smallest_static_degree
from fcp_tune.profile.schema import load_profile
from fcp_tune.search.study import SearchConfig, run_search
from fcp_tune.workload import load_workload

WORKLOADS = {
    "long-tail": "lognormal:median=384,sigma=1.1,max=6144,n=4000",
    "bimodal": "bimodal:short_mean=256,long_mean=4096,long_frac=0.08,sigma=0.4,n=4000,max=6144",
}


def bench(name: str, spec: str, nproc: int, budget: int, gbt: int, steps: int, profile: str, model: str, seed: int):
    wl = load_workload(spec, global_batch_tokens=gbt, seed=seed, max_len=6144)
    cfg_model = PRESETS[model]
    prof = load_profile(profile)
    scfg = SearchConfig(world_size=nproc, token_budget=budget, trials=60, seed=seed, ranges=4, batches=6,
                        profile_sha256=file_sha256(profile), workload_sha256=wl.seqlens_sha256(),
                        command="benchmarks/executor.py")
    covered = nproc <= prof.world_size or prof.extrapolation is not None
    base = Policy(kind="adaptive", world_size=nproc, token_budget=budget)
    static_d = smallest_static_degree(base, wl)
    # The thresholds policy needs a cost model for N ranks: skipped where the profile cannot predict N.
    searched = (("thresholds", run_search(scfg, prof, wl, cfg_model)[0].policy),) if covered else ()
    policies = searched + (
        ("adaptive", base),  # the default vocabulary: max_communicators 24 per rank
        ("adaptive (uncapped)", dataclasses.replace(base, max_communicators=0)),
        (f"static:{static_d}", Policy(kind="static", degree=static_d, world_size=nproc, token_budget=budget)),
        ("pow2", Policy(kind="pow2", world_size=nproc, token_budget=budget)),
    )
    from fcp_tune.costmodel import CostModel

    cost = CostModel.from_profile(prof, cfg_model, world_size=nproc) if covered else None
    report = run_training(RunConfig(policies, wl, cfg_model, steps=steps, warmup=1, seed=seed, cost=cost), timeout=3600)
    rows = []
    static_tps = next(r.tokens_per_s("wall").median for r in report.results if r.name.startswith("static"))
    for r in report.results:
        m = r.measured
        busy = statistics.fmean(max(s.busy_s) for s in m)
        rows.append({
            "workload": name, "nproc": nproc, "policy": r.name, "tokens_per_s": r.tokens_per_s("wall").median,
            "vs_static": r.tokens_per_s("wall").median / static_tps, "median_step_s": r.median_step_s,
            "max_busy_s": busy, "mean_busy_s": statistics.fmean(statistics.fmean(s.busy_s) for s in m),
            "waves": statistics.fmean(s.waves for s in m),
            "plan_ms": statistics.fmean(s.plan_ms for s in m),
            "plan_not_hidden_ms": 1e3 * statistics.fmean(max(s.plan_wait_s) for s in m),
            "groups_created": sum(s.new_groups for s in r.steps),
            "run_communicators": report.communicators, "run_per_rank": report.per_rank_communicators,
            "thresholds": r.policy.get("thresholds"),
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--budget", type=int, default=4096, help="tokens per rank per wave")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--profile", default="profiles/cpu-epyc-2proc-tiny.yaml")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    gbt = 2 * a.nproc * a.budget
    rows = []
    for w in a.workloads:
        rows += bench(w, WORKLOADS[w], a.nproc, a.budget, gbt, a.steps, a.profile, a.model, a.seed)
    meta = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
            "nproc": a.nproc, "budget": a.budget, "global_batch_tokens": gbt, "steps": a.steps, "model": a.model}
    if a.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
        return
    print(f"# executor, {a.nproc} processes, budget {a.budget}, global batch {gbt} tokens, {a.steps} steps "
          f"(1 warm-up), model {a.model}, {meta['date']}")
    print("| workload | policy | tokens/s | vs static | median step s | busy s (max rank) | busy s (mean) | waves "
          "| plan ms | not hidden ms | groups created |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['workload']} | {r['policy']} | {r['tokens_per_s']:,.0f} | {r['vs_static']:.2f}x | "
              f"{r['median_step_s']:.3f} | {r['max_busy_s']:.3f} | {r['mean_busy_s']:.3f} | {r['waves']:.1f} | "
              f"{r['plan_ms']:.1f} | {r['plan_not_hidden_ms']:.1f} | {r['groups_created']} |")
    for w in sorted({r["workload"] for r in rows}):
        r = next(r for r in rows if r["workload"] == w)
        print(f"communicators created ({w}, all policies): {r['run_communicators']}, "
              f"at most {r['run_per_rank']} per rank")
    for r in rows:
        if r["policy"] == "thresholds":
            print(f"searched thresholds ({r['workload']}): {r['thresholds']}")


if __name__ == "__main__":
    main()
