"""Reference H100 profiles derived from public figures (REFERENCE.md section 5), not measured.

``python -m fcp_tune.profile.reference [OUT_DIR]`` writes ``h100-8x-reference.yaml`` (one
8x H100 SXM NVLink node) and ``h100-64-reference.yaml`` (8 such nodes on InfiniBand) for
llama3-8b shapes in bf16. The output is deterministic. Every figure that is an assumption
rather than a cited number is named in :data:`ASSUMPTIONS` and written into the file.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from fcp_tune.modelcfg import PRESETS, ModelConfig
from fcp_tune.profile.collectives import COLLECTIVES
from fcp_tune.profile.flops import activation_formula, attention_bwd_flops, attention_fwd_flops
from fcp_tune.profile.schema import (
    AttentionPoint, CommCurve, CommFit, Extrapolation, LinearCost, MemoryCost, Profile, save_profile,
)

LABEL = "reference (derived from public figures, not measured)"
CREATED = "2026-11-26"
# FlashAttention-3 forward TFLOP/s, H100 SXM5, bf16, head dim 128 (FA3 paper figure).
FA3_FWD_TFLOPS = {512: 467.0, 1024: 565.0, 2048: 625.0, 4096: 638.0, 8192: 646.0, 16384: 648.0}
MATMUL_TFLOPS = 795.0  # bf16 dense 8192^3 matmul, about 790-800 TFLOP/s measured
HBM_BYTES_PER_S = 3.0e12  # device-to-device copy, read + write
NVLINK_ALLREDUCE_BUSBW = 470e9  # 8x H100 SXM all_reduce busbw, large messages: 460-480 GB/s
NVLINK_PER_DIRECTION = 450e9  # NVLink-4: 900 GB/s bidirectional per GPU
LENGTHS = tuple(2**i for i in range(6, 15))  # 64 .. 16K

SOURCES = (
    "FlashAttention-3 paper (arXiv 2407.08608), forward TFLOP/s figure, H100 SXM5, head dim 128: "
    "467/565/625/638/646/648 at 512/1k/2k/4k/8k/16k tokens",
    "H100 SXM bf16 dense matmul about 790-800 TFLOP/s and HBM3 copy about 3.0 TB/s: measurements on one "
    "H100/H200 machine, Nov 2026 (fcp-tune REFERENCE.md section 5)",
    "8x H100 SXM NVLink all_reduce busbw 460-480 GB/s: nccl-tests reference table in a cluster vendor's guide",
    "H100 NVLink-4 900 GB/s bidirectional per GPU: NVIDIA H100 datasheet",
)
ASSUMPTIONS = (
    "attention below 512 tokens: throughput falls as s/(s+198) (fitted to the 512-token point and the 16K plateau)",
    "a full q x k block runs at the curve's throughput at the geometric mean length sqrt(q*k)",
    "a causal square of s tokens runs at the full-block throughput of s/2 tokens (masking overhead)",
    "backward runs at 0.75x the forward throughput",
    "token-linear work runs at 70% of the dense matmul rate",
    "all_gather, reduce_scatter and all_to_all reach the all_reduce bus bandwidth (470 GB/s) on NVSwitch, "
    "for every group size",
    "p2p_ring reaches 85% of one NVLink direction (382.5 GB/s)",
    "collective latency alpha = 8 us + 1 us per extra rank (all_reduce twice that); p2p 8 us",
    "AdamW step: 28 bytes of HBM traffic per parameter (fp32 master, m, v read+write; bf16 grad read, weight write)",
    "memory per parameter 16 bytes: bf16 weight and grad, fp32 master, Adam m and v",
)
INTER_NODE_ASSUMPTION = (
    "8 nodes x 8 H100, 8 x 400 Gb/s InfiniBand NDR per node (one rail per GPU), 90% achievable: "
    "45 GB/s per rank per direction, 10 us extra latency per node crossed; groups node-aligned"
)


def fa3_fwd_tflops(s: float) -> float:
    """FA3 forward throughput at length ``s``: log-linear between table points, flat past 16K."""
    keys = sorted(FA3_FWD_TFLOPS)
    if s <= keys[0]:
        s0 = keys[0] * (FA3_FWD_TFLOPS[keys[-1]] / FA3_FWD_TFLOPS[keys[0]] - 1.0)
        return FA3_FWD_TFLOPS[keys[0]] * (s / (s + s0)) / (keys[0] / (keys[0] + s0))
    if s >= keys[-1]:
        return FA3_FWD_TFLOPS[keys[-1]]
    for a, b in zip(keys, keys[1:]):
        if a <= s <= b:
            w = math.log(s / a) / math.log(b / a)
            return (1 - w) * FA3_FWD_TFLOPS[a] + w * FA3_FWD_TFLOPS[b]
    raise AssertionError("unreachable")


def _attention(model: ModelConfig) -> tuple[AttentionPoint, ...]:
    h, d = model.heads, model.head_dim
    points = []
    for q in LENGTHS:
        for k in LENGTHS:
            tf = fa3_fwd_tflops(math.sqrt(q * k)) * 1e12
            points.append(AttentionPoint(q, k, False, attention_fwd_flops(q, k, False, h, d) / tf,
                                         attention_bwd_flops(q, k, False, h, d) / (0.75 * tf)))
    for s in LENGTHS:
        tf = fa3_fwd_tflops(s / 2) * 1e12
        points.append(AttentionPoint(s, s, True, attention_fwd_flops(s, s, True, h, d) / tf,
                                     attention_bwd_flops(s, s, True, h, d) / (0.75 * tf)))
    return tuple(points)


def _nvlink_curves(max_group: int) -> tuple[CommCurve, ...]:
    curves = []
    for op, c in COLLECTIVES.items():
        for n in range(2, max_group + 1):
            if c.inter_node == "link":  # point to point: one NVLink direction
                fit = CommFit(8e-6, 0.85 * NVLINK_PER_DIRECTION)
            else:
                alpha = (8.0 + (n - 1)) * 1e-6 * c.phases
                fit = CommFit(alpha, NVLINK_ALLREDUCE_BUSBW / c.bus_factor(n))
            curves.append(CommCurve(op, n, fit))
    return tuple(curves)


def reference_profile(nodes: int) -> Profile:
    """The reference profile of ``nodes`` nodes of 8 H100 SXM (llama3-8b shapes, bf16)."""
    if nodes < 1:
        raise ValueError(f"nodes must be >= 1, got {nodes}")
    model = PRESETS["llama3-8b"]
    gpn = 8
    linear_rate = 0.70 * MATMUL_TFLOPS * 1e12
    ex = None
    if nodes > 1:
        ex = Extrapolation(gpn, CommFit(10e-6, 0.9 * 400e9 / 8), INTER_NODE_ASSUMPTION)
    return Profile(
        label=LABEL, created=CREATED,
        command=f"python -m fcp_tune.profile.reference  # reference_profile(nodes={nodes})",
        hardware={"kind": "reference", "gpu": "NVIDIA H100 SXM5 80GB HBM3", "gpu_memory_bytes": 80 * 2**30,
                  "gpus_per_node": gpn, "nodes": nodes, "intra_node": "NVLink-4 via NVSwitch, 900 GB/s bidirectional per GPU",
                  "inter_node": INTER_NODE_ASSUMPTION if nodes > 1 else None},
        world_size=gpn * nodes, backend="nccl", model=model, attention=_attention(model),
        collectives=_nvlink_curves(gpn),
        linear=LinearCost(model.linear_flops_per_token() / linear_rate, model.linear_flops_per_token(),
                          "reference: 70% of 795 TFLOP/s bf16 dense matmul"),
        memory=MemoryCost(activation_formula(model), 16.0, 28.0 / HBM_BYTES_PER_S,
                          "reference: activation_formula(model); 16 B/param; AdamW 28 B/param at 3.0 TB/s"),
        extrapolation=ex, sources=SOURCES,
        notes="Assumptions: " + "; ".join(ASSUMPTIONS) + ".",
    )


def write_reference_profiles(out_dir: str | Path = "profiles") -> list[Path]:
    """Write both bundled reference profiles into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    return [save_profile(reference_profile(1), out / "h100-8x-reference.yaml"),
            save_profile(reference_profile(8), out / "h100-64-reference.yaml")]


if __name__ == "__main__":  # pragma: no cover - a thin script entry
    for path in write_reference_profiles(sys.argv[1] if len(sys.argv) > 1 else "profiles"):
        print(path)
