"""Does the cost model's ring overlap match the executor's measured ring steps? (small CPU check)

    python benchmarks/ring_overlap.py                 # 2 gloo processes, tiny model, 6 steps

Runs ``static:2`` with the ``ring`` scheme on 2 forked gloo processes (the executor trains;
every measured step's recorded plan is then predicted by the cost model built from the
bundled CPU profile) on batches of long documents (every sequence on both
ranks, so every group is a 2-rank ring). For each rank and step it prints the measured busy
time (forward + backward in its groups, ring transfers and in-group waits included) against
two predictions of the same plan:

- ``overlapped``: the cost model as it prices ``ring`` (each step ``max(compute, transfer)``,
  what Megatron-LM's ``p2p`` does and what the baselines are priced with);
- ``serial``: the same compute plus every ring transfer exposed (no overlap).

The measured busy time sitting near ``overlapped`` (and below ``serial``) says the overlap
the cost model credits is real on this executor. Wall-clock on a shared 2-core VM: read the
load note printed with it.
"""

from __future__ import annotations

import statistics

import numpy as np

from fcp_tune.costmodel import CostModel
from fcp_tune.modelcfg import PRESETS
from fcp_tune.planner.plan import Plan
from fcp_tune.policy import Policy
from fcp_tune.profile.schema import load_profile
from fcp_tune.workload import load_workload

PROFILE = "profiles/cpu-epyc-2proc-tiny.yaml"


def serial_extra(cost: CostModel, seqlens: list[int], degree: int) -> float:
    """Seconds the ring's transfers would add if none overlapped compute (per group, all layers)."""
    if degree == 1:
        return 0.0
    from fcp_tune.schemes import get_scheme
    from fcp_tune.schemes.layout import tokens_per_rank

    scheme = get_scheme("ring")
    cnt = tokens_per_rank([int(x) for x in seqlens], degree).sum(axis=0)
    steps = scheme.comm_steps(degree, float(np.max(cnt)), cost.model)
    hidden = sum(cost.comm_time(c.op, degree, c.nbytes) for c in steps if c.during)
    return cost.model.layers * hidden


def main() -> None:
    from fcp_tune.executor import RunConfig, run_training

    prof = load_profile(PROFILE)
    model = PRESETS["tiny"]
    wl = load_workload("uniform:lo=3072,hi=4096,n=64", global_batch_tokens=8192, seed=0)
    policy = Policy(kind="static", world_size=2, token_budget=4096, scheme="ring", degree=2)
    cost = CostModel.from_profile(prof, model, scheme="ring", world_size=2)
    report = run_training(RunConfig((("static:2 ring", policy),), wl, model, steps=6, warmup=1, cost=cost))
    rows = []
    for s in report.results[0].measured:
        plan = Plan.from_dict(s.plan)
        pred = cost.predict(plan, s.seqlens)
        extra = sum(serial_extra(cost, [s.seqlens[i] for i in g.seq_ids], g.size) for w in plan.waves for g in w.groups)
        for r, m in enumerate(s.waves_s):
            p = sum(w[r] for w in pred.rank_busy)
            rows.append((m, p, p + extra))
    print("| rank-steps | measured busy s (median) | overlapped prediction | serial prediction | "
          "measured / overlapped | measured / serial |")
    print("|---:|---:|---:|---:|---:|---:|")
    med = [statistics.median(x[i] for x in rows) for i in range(3)]
    print(f"| {len(rows)} | {med[0]:.4f} | {med[1]:.4f} | {med[2]:.4f} | {med[0] / med[1]:.2f} | "
          f"{med[0] / med[2]:.2f} |")


if __name__ == "__main__":
    main()
