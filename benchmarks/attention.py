"""Benchmark cp_attention forward+backward: one sequence, d = 1 vs d ranks, per scheme.

Parallel efficiency is ``t(d=1) / (d * t(d))``: 1.0 means the d ranks split the work with
no communication or imbalance cost. Achieved GFLOP/s per rank uses the FlashAttention
convention (forward ``4 * L^2 * H * D``, halved for causal; backward 2.5x forward).

    python benchmarks/attention.py                       # 1K..16K, d = 1 and 2, both schemes
    python benchmarks/attention.py --lengths 1024 4096 --reps 3 --json
    python benchmarks/attention.py --lengths 1024 4096 --kv-heads 2 --schemes allgather ring ulysses
                                   # ulysses needs d to divide --kv-heads

Each rank uses one thread (``torch.set_num_threads(1)``); on a 2-core machine only d <= 2
gives meaningful wall-clock numbers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time

import torch
import torch.distributed as dist

from fcp_tune.attention import cp_attention, shard
from fcp_tune.launch import run_local


def attention_flops(seqlen: int, heads: int, head_dim: int, causal: bool = True) -> float:
    """Forward + backward FLOPs of attention over one sequence (FlashAttention convention)."""
    fwd = 4.0 * seqlen * seqlen * heads * head_dim * (0.5 if causal else 1.0)
    return 3.5 * fwd


def _bench_rank(rank, world, seqlen, heads, kv_heads, head_dim, scheme, warmup, reps):
    g = torch.Generator().manual_seed(0)
    cu = [0, seqlen]
    q, k, v = (torch.randn(seqlen, h, head_dim, generator=g) for h in (heads, kv_heads, kv_heads))
    q, k, v = (shard(t, cu).requires_grad_() for t in (q, k, v))
    dout = torch.randn(q.shape, generator=g)
    times = []
    for i in range(warmup + reps):
        if dist.is_initialized():
            dist.barrier()
        t0 = time.perf_counter()
        out = cp_attention(q, k, v, cu, causal=True, scheme=scheme)
        out.backward(dout)
        if dist.is_initialized():
            dist.barrier()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        q.grad = k.grad = v.grad = None
    return statistics.median(times)


def run(lengths, degrees, schemes, heads, kv_heads, head_dim, warmup, reps):
    rows = []
    for scheme in schemes:
        for L in lengths:
            t = {}
            for d in degrees:
                res = run_local(_bench_rank, d, args=(L, heads, kv_heads, head_dim, scheme, warmup, reps), timeout=1800)
                t[d] = max(res)
            flops = attention_flops(L, heads, head_dim)
            for d in degrees:
                rows.append(
                    {
                        "scheme": scheme,
                        "seqlen": L,
                        "degree": d,
                        "time_s": t[d],
                        "efficiency": t[degrees[0]] * degrees[0] / (d * t[d]),
                        "gflops_per_rank": flops / d / t[d] / 1e9,
                    }
                )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    ap.add_argument("--degrees", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--schemes", nargs="+", default=["allgather", "ring"])
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=1)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = run(a.lengths, sorted(a.degrees), a.schemes, a.heads, a.kv_heads, a.head_dim, a.warmup, a.reps)
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads visible",
        "torch": torch.__version__,
        "config": vars(a),
    }
    if a.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
        return
    print(f"# attention fwd+bwd, H={a.heads} H_kv={a.kv_heads} D={a.head_dim} fp32 causal, {meta['date']}")
    print("| scheme | L | d | time (s) | efficiency | GFLOP/s per rank |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['scheme']} | {r['seqlen']} | {r['degree']} | {r['time_s']:.3f} | "
            f"{r['efficiency']:.2f} | {r['gflops_per_rank']:.1f} |"
        )


if __name__ == "__main__":
    main()
