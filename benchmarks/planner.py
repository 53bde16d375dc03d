"""Planning time of every policy kind: p50/p99 of ``plan_batch`` over seeded random batches.

Batches: ``--seqs`` sequence lengths from a log-normal long tail (median ~1.5K tokens,
sigma 1.2), clamped to what ``world x budget`` can hold. Each repeat plans a fresh batch
(seed + repeat) once, after a few warm-up plans. Reports milliseconds, the mean number of
waves and the mean predicted step time (``DefaultCost``) so speed and plan quality show
side by side.

    python benchmarks/planner.py            # markdown table
    python benchmarks/planner.py --json     # machine-readable
    python benchmarks/planner.py --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fcp_tune.planner import DefaultCost, plan_batch, step_cost  # noqa: E402
from fcp_tune.policy import Policy, min_degree_for  # noqa: E402

# (ranks, sequences, token budget, note); targets in ms for p50: (threshold kinds, adaptive)
CONFIGS = (
    (64, 512, 32768, "fits one wave", (1.0, 5.0)),
    (64, 512, 16384, "memory-tight: two waves", (1.0, 5.0)),
    (1024, 4096, 16384, "fits one wave", (10.0, 100.0)),
)


def sample_lengths(count: int, world: int, budget: int, seed: int) -> list[int]:
    """Seeded long-tail lengths (log-normal, median 1536), each clamped to fit the world."""
    rng = np.random.default_rng(seed)
    raw = np.clip(rng.lognormal(math.log(1536), 1.2, count).astype(np.int64), 16, world * budget)
    return [int(x) if min_degree_for(int(x), budget) <= world else world * (budget - 1) for x in raw]


def policies(world: int, budget: int) -> list[tuple[str, Policy]]:
    """One policy of each kind (static at degree 4, a thresholds table with 3 and 6)."""
    bounds = (budget, 3 * budget, 6 * budget)
    degs = tuple(min(d, world) for d in (1, 3, 6, 12))
    return [
        ("static (d=4)", Policy("static", world, budget, degree=min(4, world))),
        ("pow2", Policy("pow2", world, budget)),
        ("thresholds (1/3/6/12)", Policy("thresholds", world, budget, boundaries=bounds, degrees=degs)),
        ("adaptive", Policy("adaptive", world, budget)),
    ]


def bench(world: int, count: int, budget: int, repeats: int, seed: int) -> list[dict[str, Any]]:
    cost = DefaultCost()
    rows = []
    for name, policy in policies(world, budget):
        for w in range(3):
            plan_batch(sample_lengths(count, world, budget, seed - 1 - w), policy, world, cost)
        times, waves, steps = [], [], []
        for r in range(repeats):
            lengths = sample_lengths(count, world, budget, seed + r)
            gc.collect()
            t0 = time.perf_counter()
            plan = plan_batch(lengths, policy, world, cost)
            times.append((time.perf_counter() - t0) * 1e3)
            waves.append(len(plan.waves))
            steps.append(step_cost(plan, lengths, cost))
        times.sort()
        rows.append(
            {
                "ranks": world,
                "seqs": count,
                "token_budget": budget,
                "policy": name,
                "kind": policy.kind,
                "p50_ms": statistics.median(times),
                "p99_ms": times[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)],
                "waves": statistics.fmean(waves),
                "step_s": statistics.fmean(steps),
                "repeats": repeats,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    parser.add_argument("--repeats", type=int, default=0, help="batches per config (default 100 / 30)")
    parser.add_argument("--quick", action="store_true", help="10 batches per config")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    results = []
    for world, count, budget, note, targets in CONFIGS:
        reps = 10 if args.quick else (args.repeats or (100 if world <= 64 else 30))
        for row in bench(world, count, budget, reps, args.seed):
            row["note"] = note
            row["target_p50_ms"] = {"static": None, "adaptive": targets[1]}.get(row["kind"], targets[0])
            results.append(row)
    if args.json:
        meta = {"python": platform.python_version(), "machine": platform.machine(), "seed": args.seed}
        print(json.dumps({"meta": meta, "results": results}, indent=2))
        return 0
    print("| ranks | seqs | budget | policy | p50 ms | p99 ms | target p50 | waves | predicted step s |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        ok = "" if r["kind"] == "static" else (" ok" if r["p50_ms"] <= r["target_p50_ms"] else " MISS")
        target = "-" if r["kind"] == "static" else f"{r['target_p50_ms']:g}{ok}"
        print(
            f"| {r['ranks']} | {r['seqs']} | {r['token_budget']} | {r['policy']} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {target} | {r['waves']:.2f} | {r['step_s']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
