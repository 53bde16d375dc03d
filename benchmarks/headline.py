"""Headline table: adaptive FCP against the baselines users run, on configurations that fit the device.

    python benchmarks/headline.py                                  # 4 workloads, N = 64 and 1,024
    python benchmarks/headline.py --sizes 64 --workloads long-tail --batches 1

Cost-model predictions (deterministic; not measurements) on the H100 reference profile
(``profiles/h100-64-reference.yaml``, derived from public figures) for llama3-8b trained as
such a model is trained on 80 GB H100s (distributed optimizer over all N ranks, full
recompute: ``fcp_tune.modelcfg.PRESETS``). For every workload and world size N:

- per-rank token budget: ``--token-budget auto`` (the largest whose predicted model state +
  activations fit 90 % of the 80 GiB device, :func:`fcp_tune.memory.max_token_budget`);
- global batch: :func:`fcp_tune.scale.realistic_global_batch_tokens` (4M tokens up to 256
  ranks, proportional above, at least two micro-batches of the budget per replica);
- each policy runs the scheme its users run: Megatron's baselines the ring (Megatron-LM's
  default ``--cp-comm-type p2p``, transfers overlapped with compute), fcp-tune's own
  (adaptive, cost-balanced static) all-gather (fcp-tune's default);
- baselines (:func:`fcp_tune.search.evaluate.baseline_policies`): Megatron-LM static CP at
  every ``--context-parallel-size`` dividing N that fits, up to 64 (the fastest = tuned, the
  smallest beside it), Megatron-Core dynamic CP (``mcore-dynamic``), fcp-tune's cost-balanced
  static at every degree dividing N (the best);
- columns: adaptive's speedup over each, its efficiency against the ideal bound (what any
  planner could still win: ``1 / efficiency``), MFU (PaLM convention, attention per
  sequence, H100 SXM dense bf16 peak 989.4 TFLOP/s) of adaptive and of tuned Megatron, the
  largest predicted peak memory of any policy against the device's.

Prints Markdown tables and writes the numbers as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from fcp_tune.costmodel import CostModel
from fcp_tune.fileio import atomic_write_text
from fcp_tune.memory import GIB, max_token_budget
from fcp_tune.mfu import device_memory_bytes
from fcp_tune.modelcfg import PRESETS
from fcp_tune.profile.schema import load_profile
from fcp_tune.scale import realistic_global_batch_tokens
from fcp_tune.policy.specs import baseline_policies
from fcp_tune.search.evaluate import Evaluator, Scored, reference_scores, speedups_over
from fcp_tune.workload import load_workload

PROFILE = "profiles/h100-64-reference.yaml"
SCHEME = "allgather"  # fcp-tune's own policies (its default); Megatron's baselines run ring (p2p)
WORKLOADS = {
    # pre-training long tail: median 4K, a few sequences up to 128K
    "long-tail": "lognormal:median=4096,sigma=1.2,max=131072,n=20000",
    # extremely unbalanced: mostly ~1K-token documents plus rare 64K-128K ones
    "extreme": "bimodal:short_mean=1024,long_mean=98304,long_frac=0.01,sigma=0.35,max=131072,n=20000",
    # real text measured on this machine (workloads/make_real.py, docs/WORKLOADS.md)
    "python-stdlib": "workloads/python-stdlib.yaml",
    "manpages": "workloads/manpages.yaml",
}


def headline(workload: str, n: int, batches: int, seed: int = 0) -> dict:
    """One row: every baseline and adaptive scored on the same seeded batches."""
    prof = load_profile(PROFILE)
    model = PRESETS["llama3-8b"]
    device = device_memory_bytes(prof.hardware)
    budget = max_token_budget(model, n, device)
    gbt = realistic_global_batch_tokens(n, budget)
    wl = load_workload(WORKLOADS[workload], global_batch_tokens=gbt, seed=seed)
    cost = CostModel.from_profile(prof, model, scheme=SCHEME, world_size=n)
    ev = Evaluator(cost, wl, n, batches=batches, seed=seed)
    t0 = time.process_time()
    scores = []
    for name, policy in baseline_policies(n, budget, SCHEME, max(wl.seqlens)):
        t = time.process_time()
        scores.append(Scored(name, policy, ev.score(policy)))
        print(f"  {workload} N={n} {name}: {scores[-1].score.step_s:.4g} s ({time.process_time() - t:.1f} s CPU)",
              file=sys.stderr, flush=True)
    refs = reference_scores([s for s in scores if s.policy.kind != "adaptive"])
    adaptive = next(s.score for s in scores if s.policy.kind == "adaptive")
    ups = speedups_over(adaptive.step_s, refs)
    return {
        "workload": workload, "world_size": n, "token_budget": budget, "global_batch_tokens": gbt,
        "sequences_per_batch": len(ev.batches[0]), "batches": batches,
        "references": {k: v[0] for k, v in refs.items()}, "speedups": ups,
        "adaptive": adaptive.to_dict(), "megatron_tuned": refs["megatron"][1].to_dict(),
        "scores": {s.name: s.score.to_dict() for s in scores},
        "peak_gib_max": max(s.score.peak_memory_bytes for s in scores) / GIB,
        "device_gib": device / GIB, "all_fit": all(s.score.fits for s in scores),
        "cpu_s": time.process_time() - t0,
    }


def markdown(rows: list[dict]) -> str:
    head = ("| workload | N | budget/rank | global batch | tuned megatron | adaptive step s | vs megatron tuned | "
            "vs megatron smallest | vs mcore-dynamic | vs best static | adaptive eff | MFU adaptive | "
            "MFU megatron tuned | peak GiB / device |")
    out = [head, "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        up, a, m = r["speedups"], r["adaptive"], r["megatron_tuned"]
        refs = r["references"]
        out.append(
            f"| {r['workload']} | {r['world_size']:,} | {r['token_budget']:,} | {r['global_batch_tokens'] / 2**20:.0f}M "
            f"| {refs['megatron']} (smallest {refs['megatron_smallest']}) | {a['step_s']:.3f} "
            f"| {up['megatron']:.2f}x | {up['megatron_smallest']:.2f}x | {up['mcore_dynamic']:.2f}x "
            f"| {up['best_static']:.2f}x ({refs['best_static']}) | {a['efficiency']:.3f} | {a['mfu']:.1%} "
            f"| {m['mfu']:.1%} | {r['peak_gib_max']:.1f} / {r['device_gib']:.0f}{'' if r['all_fit'] else ' !'} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 1024])
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--batches", type=int, default=2, help="seeded global batches per row (1 at N >= 1024)")
    ap.add_argument("--out", default="benchmarks/headline.json")
    ap.add_argument("--from-json", help="only print the tables of a JSON file this script wrote")
    args = ap.parse_args(argv)
    if args.from_json:
        print(markdown(json.loads(Path(args.from_json).read_text())["rows"]))
        return
    rows = []
    for name in args.workloads:
        for n in args.sizes:
            rows.append(headline(name, n, args.batches if n < 1024 else 1))
            atomic_write_text(Path(args.out), json.dumps({"date": datetime.date.today().isoformat(),
                                                          "profile": PROFILE, "scheme": SCHEME, "rows": rows},
                                                         indent=2) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
