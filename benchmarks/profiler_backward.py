"""What the profiler's backward timing used to over-price: the packed ``block_backward`` against
``accumulate_backward`` (through ``bound_backward``), the call every scheme makes.

One process, one thread, the ``tiny`` model's head shape (the bundled CPU profile's), one full
``L x L`` block and one causal square per length. Both calls run back to back in each repeat
(interleaved, so machine load hits both alike); CPU time per call (``time.process_time``),
median over repeats. A ratio above 1 is how much dearer the packed call is, i.e. how much a
profile measured with it over-prices that block's backward.

    python benchmarks/profiler_backward.py                  # L = 64, 256, 1024; 0.3 s of repeats each
    python benchmarks/profiler_backward.py --lengths 128 512 --json
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import platform
import statistics
import time

import torch

from fcp_tune.attention import kernels
from fcp_tune.modelcfg import PRESETS


def _cpu_s(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def compare(length: int, causal: bool, model: str = "tiny", budget_s: float = 0.3) -> dict:
    """Median CPU seconds of both backward calls on one ``length x length`` block."""
    m = PRESETS[model]
    gen = torch.Generator().manual_seed(length)
    q, k, v, dout = (torch.randn(length, h, m.head_dim, generator=gen) for h in (m.heads, m.kv_heads, m.kv_heads, m.heads))
    scale = kernels.default_scale(m.head_dim)
    ranges = [(0, length)]
    out, lse = kernels.block_forward(q, k, v, ranges, ranges, causal, scale)
    packed = functools.partial(kernels.block_backward, dout, q, k, v, out, lse, ranges, ranges, causal, scale)
    in_place = kernels.bound_backward(dout, q, k, v, out, lse, ranges, ranges, causal, scale)
    reps = max(5, int(budget_s / max(1e-4, _cpu_s(packed))))
    a, b = [], []
    for _ in range(reps):
        a.append(_cpu_s(packed))
        b.append(_cpu_s(in_place))
    pa, pb = statistics.median(a), statistics.median(b)
    return {"length": length, "causal": causal, "repeats": reps, "block_backward_ms": 1e3 * pa,
            "accumulate_backward_ms": 1e3 * pb, "ratio": pa / pb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--model", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [compare(n, c, args.model) for n in args.lengths for c in (False, True)]
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
            "torch": torch.__version__, "python": platform.python_version(), "model": args.model}
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=1))
        return
    print(meta)
    print("| L | block | block_backward ms | accumulate_backward ms | ratio |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['length']} | {'causal' if r['causal'] else 'full'} | {r['block_backward_ms']:.3f} | "
              f"{r['accumulate_backward_ms']:.3f} | {r['ratio']:.3f} |")


if __name__ == "__main__":
    main()
