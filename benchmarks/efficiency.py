"""Where the adaptive plan loses against the ideal bound (cost-model predictions, not measurements).

    python benchmarks/efficiency.py                       # long-tail and extreme, N = 64, 4 batches
    python benchmarks/efficiency.py --sizes 64 1024 --batches 2 --workloads long-tail

For every seeded batch (global batch N x 16K tokens, llama3-8b, per-rank budget 16K, the
64-GPU H100 reference profile) the adaptive plan's predicted step time is split into the
three parts of ``efficiency = ideal / step``:

- **bound work**: each sequence's rank-seconds at its cheapest fitting degree
  (:meth:`CostModel.sequence_work`, what :meth:`CostModel.ideal_time` spreads over N);
- **over-sharding**: the plan's busy rank-seconds beyond that (sequences on more ranks
  than their cheapest degree, or sharing a group whose communication they pay);
- **idle**: rank-seconds no group uses before the plan's critical path ends (uneven waves).

It also prints the critical-path bound (the longest sequence alone at its fastest degree),
to tell "the bound is loose" apart from "the plan is loose".
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from fcp_tune.costmodel import CostModel
from fcp_tune.modelcfg import PRESETS
from fcp_tune.planner import plan_batch
from fcp_tune.policy import Policy, min_degree_for
from fcp_tune.profile.schema import load_profile
from fcp_tune.workload import BatchSampler, load_workload
from search import PROFILE, WORKLOADS  # benchmarks/search.py: the same profile and workloads as the headline rows


def decompose(cost: CostModel, batch: list[int], n: int, budget: int) -> dict:
    """One batch's adaptive plan: step, bound, and the rank-seconds of work, over-sharding and idle."""
    plan = plan_batch(batch, Policy("adaptive", n, budget), cost=cost)
    pred = cost.predict(plan, batch, budget)
    fixed = pred.grad_sync_s + pred.optimizer_s
    work = sum(cost.sequence_work(int(x), budget) for x in batch)
    busy = float(np.sum(pred.rank_busy))
    longest = max(batch)
    m = min_degree_for(longest, budget)
    critical = min(cost.group_time([longest], d) for d in range(m, min(n, 8 * m) + 1)) + fixed
    return {
        "sequences": len(batch), "longest": longest, "waves": len(plan.waves),
        "step_s": pred.step_time, "ideal_s": pred.ideal_time, "efficiency": pred.efficiency,
        "critical_path_bound_s": critical,
        "work_rank_s": work, "oversharding_rank_s": busy - work,
        "idle_rank_s": n * (pred.step_time - fixed) - busy,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64])
    ap.add_argument("--workloads", nargs="+", default=["long-tail", "extreme"], choices=list(WORKLOADS))
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--budget", type=int, default=16384)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    prof, model = load_profile(PROFILE), PRESETS["llama3-8b"]
    rows = []
    for n in a.sizes:
        cost = CostModel.from_profile(prof, model, "allgather", n)
        for name in a.workloads:
            wl = load_workload(WORKLOADS[name], global_batch_tokens=n * a.budget)
            for i, batch in enumerate(BatchSampler(wl, seed=0).batches(a.batches)):
                rows.append({"workload": name, "N": n, "batch": i, **decompose(cost, batch, n, a.budget)})
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    print("| workload | N | batch | seqs | longest | waves | step s | ideal s | eff | critical-path s "
          "| over-sharding % | idle % |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        total = r["work_rank_s"] + r["oversharding_rank_s"] + r["idle_rank_s"]
        print(f"| {r['workload']} | {r['N']} | {r['batch']} | {r['sequences']} | {r['longest']} | {r['waves']} | "
              f"{r['step_s']:.3f} | {r['ideal_s']:.3f} | {r['efficiency']:.3f} | {r['critical_path_bound_s']:.3f} | "
              f"{100 * r['oversharding_rank_s'] / total:.1f} | {100 * r['idle_rank_s'] / total:.1f} |")


if __name__ == "__main__":
    main()
