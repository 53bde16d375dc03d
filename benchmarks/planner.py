"""Planning time of every policy kind: p50/p99 of ``plan_batch`` over seeded random batches.

Batches: ``--seqs`` sequence lengths from a log-normal long tail (median ~1.5K tokens,
sigma 1.2), clamped to what ``world x budget`` can hold. Each repeat plans a fresh batch
(seed + repeat) once, after a few warm-up plans. Reports milliseconds, the mean number of
waves and the mean predicted step time (``DefaultCost``) so speed and plan quality show
side by side.

    python benchmarks/planner.py            # markdown table
    python benchmarks/planner.py --json     # machine-readable
    python benchmarks/planner.py --quick    # fewer repeats
    python benchmarks/planner.py --cap-cost # what the communicator cap costs (H100 reference profile)
    python benchmarks/planner.py --real-cost # plan CPU time with the calibrated CostModel, N = 64/256/1024

``adaptive`` plans with the default group vocabulary (``max_communicators`` 24 per rank,
nodes of 8); ``adaptive (uncapped)`` with every contiguous range (``max_communicators: 0``).
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
        ("adaptive (uncapped)", Policy("adaptive", world, budget, max_communicators=0)),
    ]


def bench(world: int, count: int, budget: int, repeats: int, seed: int) -> list[dict[str, Any]]:
    cost = DefaultCost()
    rows = []
    for name, policy in policies(world, budget):
        for w in range(3):
            plan_batch(sample_lengths(count, world, budget, seed - 1 - w), policy, cost=cost)
        times, waves, steps = [], [], []
        for r in range(repeats):
            lengths = sample_lengths(count, world, budget, seed + r)
            gc.collect()
            t0 = time.perf_counter()
            plan = plan_batch(lengths, policy, cost=cost)
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


CAP_PROFILE = "profiles/h100-64-reference.yaml"
CAP_WORKLOADS = {  # as benchmarks/search.py
    "long-tail": "lognormal:median=4096,sigma=1.2,max=131072,n=20000",
    "extreme": "bimodal:short_mean=1024,long_mean=98304,long_frac=0.01,sigma=0.35,max=131072,n=20000",
}


def cap_cost(caps: tuple[int, ...] = (0, 16, 24), worlds: tuple[int, ...] = (8, 64, 256, 1024),
             budget: int = 16384, batches: int = 4) -> list[dict[str, Any]]:
    """Adaptive plans with and without the communicator cap: predicted step and communicators used.

    Per world size and workload (global batch N x budget, llama3-8b shapes), the mean
    predicted step over ``batches`` seeded batches for each cap (0 = uncapped), the
    communicators (groups of size > 1) the plans used in total and per rank, and the
    vocabulary's per-rank bound.
    """
    from fcp_tune.costmodel import CostModel
    from fcp_tune.planner.vocab import build_vocabulary, per_rank_count
    from fcp_tune.profile.schema import load_profile
    from fcp_tune.workload import BatchSampler, load_workload

    prof = load_profile(str(Path(__file__).resolve().parent.parent / CAP_PROFILE))
    rows = []
    for name, spec in CAP_WORKLOADS.items():
        for n in worlds:
            cost = CostModel.from_profile(prof, prof.model, world_size=n)
            sample = BatchSampler(load_workload(spec, global_batch_tokens=n * budget), seed=0).batches(batches)
            base = None
            for cap in caps:
                policy = Policy("adaptive", n, budget, max_communicators=cap)
                steps, used, t0 = [], set(), time.perf_counter()
                for b in sample:
                    plan = plan_batch(b, policy, cost=cost)
                    steps.append(cost.predict(plan, b, budget).step_time)
                    used |= {r for r in plan.ranges() if r[1] > 1}
                step = statistics.fmean(steps)
                base = step if cap == 0 else base
                rows.append({
                    "workload": name, "ranks": n, "max_communicators": cap, "step_s": step,
                    "vs_uncapped_pct": 100 * (step / base - 1), "used": len(used),
                    "used_per_rank": per_rank_count(sorted(used), n),
                    "bound_per_rank": build_vocabulary(n, 8, cap).per_rank,
                    "plan_ms": 1e3 * (time.perf_counter() - t0) / batches,
                })
                print(rows[-1], file=sys.stderr, flush=True)
    return rows


REAL_WORKLOAD = "lognormal:median=2000,sigma=1.3,max=131072,n=20000"  # the issue-16 long tail
REAL_BATCHES = {"memory-full": 1, "4 micro-batches": 4}  # global batch = this x N x budget tokens
# p50 targets in ms per world size: (thresholds, adaptive); and adaptive's plan/step target
REAL_TARGETS = {64: (10.0, 50.0, 0.02), 256: (None, None, None), 1024: (100.0, 500.0, 0.20)}


def real_cost(worlds: tuple[int, ...] = (64, 256, 1024), budget: int = 16384, repeats: int = 20,
              warmup: int = 3, kinds: tuple[str, ...] = ("thresholds", "adaptive")) -> list[dict[str, Any]]:
    """Plan time with the calibrated ``CostModel`` (H100 64-GPU reference profile, llama3-8b, allgather).

    Per world size and batch shape (:data:`REAL_BATCHES`), ``warmup`` batches are planned first
    (their CPU time is reported as ``cold_ms``: the cost table fills then), then ``repeats``
    fresh seeded batches. Times are CPU seconds of this process (``time.process_time``): the
    machine is shared, so wall-clock time would measure the neighbours' load.
    """
    from fcp_tune.costmodel import CostModel
    from fcp_tune.modelcfg import PRESETS
    from fcp_tune.profile.schema import load_profile
    from fcp_tune.workload import BatchSampler, load_workload

    prof = load_profile(str(Path(__file__).resolve().parent.parent / CAP_PROFILE))
    model = PRESETS["llama3-8b"]
    rows = []
    for n in worlds:
        for shape, micro in REAL_BATCHES.items():
            wl = load_workload(REAL_WORKLOAD, global_batch_tokens=micro * n * budget)
            sample = BatchSampler(wl, seed=0).batches(warmup + repeats)
            for kind in kinds:
                cost = CostModel.from_profile(prof, model, "allgather", n)  # fresh: cold tables per kind
                policy = (Policy("adaptive", n, budget) if kind == "adaptive" else
                          Policy("thresholds", n, budget, boundaries=(budget, 3 * budget, 6 * budget),
                                 degrees=tuple(min(d, n) for d in (1, 3, 6, 12))))
                cold, times, steps = [], [], []
                for i, b in enumerate(sample):
                    gc.collect()
                    t0 = time.process_time()
                    plan = plan_batch(b, policy, cost=cost)
                    dt = time.process_time() - t0
                    if i < warmup:
                        cold.append(dt)
                        continue
                    times.append(dt)
                    steps.append(cost.predict(plan, b, budget).step_time)
                times.sort()
                step = statistics.median(steps)
                p50 = statistics.median(times)
                rows.append({
                    "ranks": n, "batch": shape, "policy": kind, "seqs": statistics.fmean(len(b) for b in sample),
                    "cold_ms": 1e3 * max(cold, default=0.0), "p50_ms": 1e3 * p50,
                    "p99_ms": 1e3 * times[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)],
                    "step_s": step, "plan_over_step": p50 / step, "repeats": repeats,
                    "target_p50_ms": REAL_TARGETS.get(n, (None, None))[0 if kind == "thresholds" else 1],
                })
                print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    parser.add_argument("--repeats", type=int, default=0, help="batches per config (default 100 / 30)")
    parser.add_argument("--quick", action="store_true", help="10 batches per config")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--cap-cost", action="store_true", help="capped vs uncapped adaptive plans, H100 profile")
    parser.add_argument("--real-cost", action="store_true",
                        help="plan with the calibrated CostModel (H100 reference profile), CPU time")
    parser.add_argument("--worlds", type=int, nargs="+", default=[64, 256, 1024], help="with --real-cost")
    args = parser.parse_args(argv)
    if args.real_cost:
        rows = real_cost(tuple(args.worlds), repeats=5 if args.quick else (args.repeats or 20))
        if args.json:
            print(json.dumps({"profile": CAP_PROFILE, "workload": REAL_WORKLOAD, "clock": "process_time",
                              "results": rows}, indent=2))
            return 0
        print("| N | batch | policy | seqs | cold ms | p50 ms | p99 ms | target p50 | predicted step s | plan / step |")
        print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            t = r["target_p50_ms"]
            mark = "-" if t is None else f"{t:g} {'ok' if r['p50_ms'] <= t else 'MISS'}"
            print(f"| {r['ranks']} | {r['batch']} | {r['policy']} | {r['seqs']:.0f} | {r['cold_ms']:.0f} | "
                  f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {mark} | {r['step_s']:.3f} | "
                  f"{100 * r['plan_over_step']:.2f} % |")
        return 0
    if args.cap_cost:
        rows = cap_cost()
        if args.json:
            print(json.dumps({"profile": CAP_PROFILE, "results": rows}, indent=2))
            return 0
        print("| workload | N | cap per rank | predicted step s | vs uncapped | used | used per rank | bound per rank |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            cap = r["max_communicators"] or "none"
            print(f"| {r['workload']} | {r['ranks']} | {cap} | {r['step_s']:.3f} | {r['vs_uncapped_pct']:+.2f} % | "
                  f"{r['used']} | {r['used_per_rank']} | {r['bound_per_rank']} |")
        return 0
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
