"""Analytic profiles for tests and examples: known answers, no measurement.

Attention blocks take ``overhead_s + FLOPs / flops_per_s`` (FA3 FLOP convention, the same
rate forward and backward); every collective takes exactly ``alpha_s + bytes / beta_Bps``
and carries samples generated from that law, so a fit must recover it.
"""

from __future__ import annotations

from typing import Sequence

from fcp_tune.modelcfg import PRESETS, ModelConfig
from fcp_tune.profile.collectives import OPS
from fcp_tune.profile.flops import activation_formula, attention_bwd_flops, attention_fwd_flops
from fcp_tune.profile.schema import (
    AttentionPoint, CommCurve, CommFit, CommSample, Extrapolation, LinearCost, MemoryCost, Profile,
)


def synthetic_profile(
    world_size: int = 4,
    model: ModelConfig | None = None,
    lengths: Sequence[int] = (64, 256, 1024, 4096),
    flops_per_s: float = 1e11,
    overhead_s: float = 1e-5,
    alpha_s: float = 1e-4,
    beta_Bps: float = 1e9,
    linear_flops_per_s: float = 1e11,
    ops: Sequence[str] = OPS,
    extrapolation: Extrapolation | None = None,
    message_bytes: Sequence[int] = (4096, 65536, 1 << 20, 16 << 20),
) -> Profile:
    """A consistent synthetic :class:`Profile` (label ``synthetic``)."""
    m = model or PRESETS["tiny"]
    h, d = m.heads, m.head_dim
    pts = [(q, k, False) for q in lengths for k in lengths] + [(s, s, True) for s in lengths]
    attention = tuple(
        AttentionPoint(q, k, c, overhead_s + attention_fwd_flops(q, k, c, h, d) / flops_per_s,
                       overhead_s + attention_bwd_flops(q, k, c, h, d) / flops_per_s)
        for q, k, c in pts
    )
    curves = []
    fit = CommFit(alpha_s, beta_Bps)
    for op in ops:
        for n in range(2, world_size + 1):
            samples = tuple(CommSample(b, fit.time(b), fit.time(b) * 1.05) for b in message_bytes)
            curves.append(CommCurve(op, n, fit, samples))
    flops = m.linear_flops_per_token()
    return Profile(
        label="synthetic", created="2026-01-01", command="synthetic_profile()", hardware={"kind": "synthetic"},
        world_size=world_size, backend="none", model=m, attention=attention, collectives=tuple(curves),
        linear=LinearCost(flops / linear_flops_per_s, flops, "synthetic"),
        memory=MemoryCost(activation_formula(m), 16.0, 1e-9, "synthetic"),
        extrapolation=extrapolation, sources=(), notes="analytic, for tests",
    )
