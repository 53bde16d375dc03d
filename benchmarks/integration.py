"""Host-side cost of the integration API's per-rank work in one step (CPU time, no collectives).

What ``FCP.step`` does on every rank besides planning (measured in ``benchmarks/planner.py``)
and its two collectives (the plan-digest all-reduce, group creation): counting the global
batch's predicted tokens and building this rank's shards (zigzag token ids, positions,
globally shifted labels) for each wave it takes part in. A global batch of about 4M tokens
(Llama-2-sized, docs/REFERENCE.md section 7) of log-normal lengths (median 2,048, sigma 1,
at most 65,536) with prompt labels, planned adaptively at N ranks and 16K tokens per rank;
the slowest of a few sampled ranks is reported, as ``time.process_time`` (the machine is shared).

    python benchmarks/integration.py --sizes 64 1024
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fcp_tune.integration.shards import as_sequences, global_targets, shard_sequences, target_count
from fcp_tune.planner import plan_batch
from fcp_tune.policy import Policy


def global_batch(tokens: int, seed: int) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    out, total = [], 0
    while total < tokens:
        n = int(min(65536, max(1, rng.lognormal(np.log(2048), 1.0))))
        out.append(torch.from_numpy(rng.integers(0, 32000, n)))
        total += n
    return out


def rank_work(seqs, labels, plan, rank: int) -> tuple[float, int]:
    """CPU seconds of one rank's host work in ``FCP.step`` (planning and collectives excluded)."""
    t0 = time.process_time()
    tokens = as_sequences(seqs)
    targets = global_targets(tokens, labels)
    target_count(targets)
    local = 0
    for w in range(len(plan.waves)):
        g = plan.group_of(w, rank)
        if g is not None:
            local += shard_sequences(tokens, targets, g.seq_ids, g.size, rank - g.start).input_ids.numel()
    return time.process_time() - t0, local


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 1024])
    ap.add_argument("--tokens", type=int, default=4 << 20)
    ap.add_argument("--ranks", type=int, default=4, help="ranks sampled per size")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seqs = global_batch(args.tokens, 0)
    labels = [torch.cat([torch.full((min(16, len(s)),), -100), s[16:]]) for s in seqs]
    print(f"global batch: {len(seqs)} sequences, {sum(len(s) for s in seqs):,} tokens")
    print("| N | waves | sampled ranks | local tokens (max) | CPU ms (max) | ns per local token |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        plan = plan_batch([len(s) for s in seqs], Policy("adaptive", n, 16384))
        ranks = sorted({0, n // 3, (2 * n) // 3, n - 1})[: args.ranks]
        res = [rank_work(seqs, labels, plan, r) for r in ranks]
        worst = max(res)
        print(f"| {n:,} | {len(plan.waves)} | {len(ranks)} | {max(r[1] for r in res):,} | {1e3 * worst[0]:.1f} "
              f"| {1e9 * worst[0] / max(1, worst[1]):.0f} |")


if __name__ == "__main__":
    main()
