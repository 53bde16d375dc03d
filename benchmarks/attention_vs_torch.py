"""fcp-tune's ring and all-gather attention against PyTorch's own ring CP, forward + backward, d = 2.

PyTorch's public ``context_parallel`` does not run on CPU, but its ring functions do, with
the CPU flash kernel: ``_templated_ring_attention`` / ``_templated_ring_attention_backward``
from ``torch.distributed.tensor.experimental._context_parallel`` (load balancing on, its
default K/V rotation: all-gather). Both sides get the same inputs: one causal sequence of
``L`` tokens, each rank holding the head-tail chunks ``i`` and ``2d-1-i`` (PyTorch's round
robin and fcp-tune's zigzag are the same split when ``2d`` divides ``L``), fp32, one thread
per rank. Every repeat runs the three implementations back to back in a rotating order
(interleaved, so machine load hits all alike); the table reports medians over repeats of
the slower rank's time, and each scheme's ratio to PyTorch (below 1: fcp-tune is faster).

    python benchmarks/attention_vs_torch.py                   # L = 4K, 8K, 16K, 25 repeats
    python benchmarks/attention_vs_torch.py --lengths 8192 --reps 50 --json
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

IMPLS = ("torch-ring", "fcp-ring", "fcp-allgather")


def _torch_ring(q, k, v, dout, group):
    """PyTorch's ring attention forward + backward on ``[1, H, L_local, D]`` tensors."""
    from torch.distributed.tensor.experimental._context_parallel import _attention as tcp

    fwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    bwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
    out, lse = tcp._templated_ring_attention(group, 2, fwd, q, k, v, is_causal=True, dropout_p=0.0)[:2]
    grads = tcp._templated_ring_attention_backward(
        group, 2, bwd, dout, "grad_out", q, k, v, out, lse, is_causal=True, dropout_p=0.0)
    return out, grads[:3]


def _rank(rank, world, seqlen, heads, head_dim, warmup, reps):
    g = torch.Generator().manual_seed(0)
    cu = [0, seqlen]
    full = [torch.randn(seqlen, heads, head_dim, generator=g) for _ in range(4)]  # q, k, v, dout
    local = [shard(t, cu) for t in full]  # [L_local, H, D], head-tail chunks of this rank
    as_torch = [t.permute(1, 0, 2).unsqueeze(0).contiguous() for t in local]  # [1, H, L_local, D]
    group = dist.group.WORLD

    def run(impl: str) -> None:
        if impl == "torch-ring":
            _torch_ring(*as_torch, group)
            return
        q, k, v = (t.clone().requires_grad_() for t in local[:3])
        out = cp_attention(q, k, v, cu, causal=True, scheme=impl.split("-")[1])
        out.backward(local[3])

    times: dict[str, list[float]] = {name: [] for name in IMPLS}
    cpu: dict[str, list[float]] = {name: [] for name in IMPLS}
    for i in range(warmup + reps):
        for j in range(len(IMPLS)):
            name = IMPLS[(i + j) % len(IMPLS)]  # rotate the order every repeat
            dist.barrier()
            t0, c0 = time.perf_counter(), time.thread_time()
            run(name)
            c1 = time.thread_time()  # this rank's own CPU time, before waiting for the peer
            dist.barrier()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(c1 - c0)
    return times, cpu


def check_same_result(seqlen: int = 512, heads: int = 2, head_dim: int = 16) -> float:
    """Largest difference of fcp-tune's ring output against PyTorch's (same inputs, d = 2)."""
    res = run_local(_check_rank, 2, args=(seqlen, heads, head_dim), timeout=600)
    return max(res)


def _check_rank(rank, world, seqlen, heads, head_dim):
    g = torch.Generator().manual_seed(1)
    cu = [0, seqlen]
    local = [shard(torch.randn(seqlen, heads, head_dim, generator=g, dtype=torch.float64), cu) for _ in range(4)]
    as_torch = [t.permute(1, 0, 2).unsqueeze(0).contiguous() for t in local]
    ref, _ = _torch_ring(*as_torch, dist.group.WORLD)
    mine = cp_attention(*local[:3], cu, causal=True, scheme="ring")
    return float((ref[0].permute(1, 0, 2) - mine).abs().max())


def bench(lengths, heads, head_dim, warmup, reps):
    rows = []
    for L in lengths:
        per_rank = run_local(_rank, 2, args=(L, heads, head_dim, warmup, reps), timeout=3600)
        slow = {name: [max(a, b) for a, b in zip(per_rank[0][0][name], per_rank[1][0][name])] for name in IMPLS}
        busy = {name: [max(a, b) for a, b in zip(per_rank[0][1][name], per_rank[1][1][name])] for name in IMPLS}
        med = {name: statistics.median(t) for name, t in slow.items()}
        cpu = {name: statistics.median(t) for name, t in busy.items()}
        rows.append({"seqlen": L, "degree": 2, "reps": reps, **{f"{n}_s": med[n] for n in IMPLS},
                     **{f"{n}_cpu_s": cpu[n] for n in IMPLS},
                     "ring_ratio": med["fcp-ring"] / med["torch-ring"],
                     "allgather_ratio": med["fcp-allgather"] / med["torch-ring"],
                     "ring_cpu_ratio": cpu["fcp-ring"] / cpu["torch-ring"],
                     "allgather_cpu_ratio": cpu["fcp-allgather"] / cpu["torch-ring"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192, 16384])
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    diff = check_same_result()
    rows = bench(a.lengths, a.heads, a.head_dim, a.warmup, a.reps)
    meta = {"date": datetime.date.today().isoformat(), "torch": torch.__version__, "machine": platform.machine(),
            "max_abs_diff_vs_torch_fp64": diff, "config": vars(a)}
    if a.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
        return
    print(f"# fwd+bwd, d = 2, H={a.heads} D={a.head_dim} fp32 causal, medians of {a.reps} interleaved repeats; "
          f"ring output vs PyTorch (fp64): max |diff| {diff:.1e}")
    print("wall: the slower rank's wall time; CPU: the busier rank's own thread CPU time (waits excluded)")
    print("| L | torch ring s | fcp ring s | fcp all-gather s | ring / torch | all-gather / torch "
          "| CPU: ring / torch | CPU: all-gather / torch |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['seqlen']} | {r['torch-ring_s']:.4f} | {r['fcp-ring_s']:.4f} | {r['fcp-allgather_s']:.4f} | "
              f"{r['ring_ratio']:.2f}x | {r['allgather_ratio']:.2f}x | {r['ring_cpu_ratio']:.2f}x | "
              f"{r['allgather_cpu_ratio']:.2f}x |")


if __name__ == "__main__":
    main()
