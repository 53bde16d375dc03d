"""GPU smoke check of the attention kernels against the CPU float64 reference (one GPU).

Run on a machine with a CUDA GPU (multi-rank NCCL needs two or more GPUs; this checks
kernels only):

    python benchmarks/gpu_smoke.py            # prints a table; exit 1 on a parity failure

1. ``cp_attention`` with no process group (d = 1) on CUDA, bf16/fp16/fp32, causal and not,
   GQA, a varlen batch: output and gradients against the float64 reference on CPU.
2. The prefix-plus-causal-square split the all-gather scheme uses (full block over
   ``[0, a)`` plus causal square over ``[a, b)``, merged by log-sum-exp), on CUDA.
   The same with MLA head dims (q/k 192, v 128: the fused kernel runs on zero-padded heads).
3. Forward+backward time and TFLOP/s of the local kernel at 4K/8K/16K tokens (bf16).
"""

from __future__ import annotations

import sys
import time

import torch

from fcp_tune.attention import cp_attention
from fcp_tune.attention.kernels import block_backward, block_forward
from fcp_tune.attention.merge import merge_into, new_accumulators, ranges_to_rows
from fcp_tune.attention.parity import TOLERANCE
from fcp_tune.attention.reference import reference_attention
from fcp_tune.schemes import SCHEMES


def _err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.double().cpu() - ref).abs().max()) / max(1.0, float(ref.abs().max()))


def parity(dev: torch.device) -> bool:
    ok = True
    cu = [0, 1, 7, 130, 131, 640]
    g = torch.Generator().manual_seed(0)
    shapes = [(dtype, causal, 64, 64) for dtype in (torch.bfloat16, torch.float16, torch.float32)
              for causal in (True, False)] + [(torch.bfloat16, True, 192, 128), (torch.float32, True, 192, 128)]
    for dtype, causal, dqk, dv in shapes:
        base = [torch.randn(640, h, d, generator=g, dtype=torch.float64).to(dtype).double()
                for h, d in ((8, dqk), (2, dqk), (2, dv))]
        dout = torch.randn(640, 8, dv, generator=g, dtype=torch.float64)
        ref_in = [t.clone().requires_grad_() for t in base]
        ref = reference_attention(*ref_in, cu, causal=causal)
        ref.backward(dout)
        for scheme in SCHEMES:  # every scheme's d = 1 path runs the same CUDA kernels
            x = [t.to(dev, dtype).requires_grad_() for t in base]
            out = cp_attention(*x, cu, causal=causal, scheme=scheme)
            out.backward(dout.to(dev, dtype))
            errs = [_err(out, ref)] + [_err(a.grad, b.grad) for a, b in zip(x, ref_in)]
            name = str(dtype).split(".")[-1]
            tol = TOLERANCE[name]
            ok &= max(errs) <= tol
            print(f"d=1 {scheme:9s} {name:9s} causal={causal!s:5s} D={dqk}/{dv} max err out/dq/dk/dv = "
                  + " ".join(f"{e:.1e}" for e in errs) + f"  tol {tol:.0e}  {'ok' if max(errs) <= tol else 'FAIL'}")
    # prefix + causal-square split, merged
    L, a = 512, 192
    q, k, v = (torch.randn(L, h, 64, generator=g, dtype=torch.float64) for h in (8, 2, 2))
    ref = reference_attention(q, k, v, [0, L], causal=True)[a:]
    qd, kd, vd = (t.to(dev, torch.bfloat16) for t in (q[a:], k, v))
    acc_o, acc_l = new_accumulators(L - a, 8, 64, torch.float32, dev)
    rows = ranges_to_rows([(0, L - a)], dev)
    for kr, c in (((0, a), False), ((a, L), True)):
        o, lse = block_forward(qd, kd, vd, [(0, L - a)], [kr], c, 64 ** -0.5)
        merge_into(acc_o, acc_l, rows, o, lse)
    e = _err(acc_o, ref)
    ok &= e <= TOLERANCE["bfloat16"]
    print(f"prefix+diagonal merge bf16 err {e:.1e}  {'ok' if e <= TOLERANCE['bfloat16'] else 'FAIL'}")
    return ok


def timing(dev: torch.device) -> None:
    for L in (4096, 8192, 16384):
        q, k, v = (torch.randn(L, h, 128, device=dev, dtype=torch.bfloat16) for h in (32, 8, 8))
        dout = torch.randn_like(q)
        for _ in range(2):
            o, lse = block_forward(q, k, v, [(0, L)], [(0, L)], True, 128 ** -0.5)
            block_backward(dout, q, k, v, o, lse, [(0, L)], [(0, L)], True, 128 ** -0.5)
        torch.cuda.synchronize()
        n = 10
        t0 = time.perf_counter()
        for _ in range(n):
            o, lse = block_forward(q, k, v, [(0, L)], [(0, L)], True, 128 ** -0.5)
            block_backward(dout, q, k, v, o, lse, [(0, L)], [(0, L)], True, 128 ** -0.5)
        torch.cuda.synchronize()
        t = (time.perf_counter() - t0) / n
        flops = 3.5 * 4 * L * L * 32 * 128 * 0.5
        print(f"causal fwd+bwd L={L:6d} H=32 H_kv=8 D=128 bf16: {t * 1e3:7.2f} ms  {flops / t / 1e12:6.1f} TFLOP/s")


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    dev = torch.device("cuda", 0)
    print(torch.cuda.get_device_name(dev), "torch", torch.__version__)
    ok = parity(dev)
    timing(dev)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
