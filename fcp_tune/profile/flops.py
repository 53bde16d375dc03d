"""The attention FLOP convention every profile and the cost model share (FlashAttention-3's).

A block of ``s_q`` query rows against ``s_k`` key rows, ``h`` query heads of dimension
``d`` (values ``d_v``) costs ``2 * h * s_q * avg_k * (d + d_v)`` forward FLOPs, where
``avg_k = s_k`` for a full block and ``avg_k = (max(0, s_k - s_q) + s_k) / 2`` for a causal
(bottom-right aligned) block; backward counts 2.5x forward. For a causal square
(``s_q = s_k = s``) that is ``2 h s^2 (d + d_v) / 2``: half the full block, the
FlashAttention benchmark convention. Throughput in a profile (``*_tflops``) is these FLOPs
divided by the measured seconds; GQA does not change the count (K/V heads are shared).
"""

from __future__ import annotations

from fcp_tune.modelcfg import ModelConfig

FLOP_CONVENTION = (
    "FlashAttention-3: forward = 2 * heads * q_len * avg_k * (head_dim + head_dim_v), avg_k = k_len "
    "for a full block, (max(0, k_len - q_len) + k_len) / 2 for a causal block; backward = 2.5 x forward"
)
BWD_FACTOR = 2.5


def avg_keys(q_len: float, k_len: float, causal: bool) -> float:
    """Keys each query row sees on average: ``k_len`` (full) or the bottom-right causal mean."""
    if not causal:
        return float(k_len)
    return (max(0.0, float(k_len) - float(q_len)) + float(k_len)) / 2.0


def attention_fwd_flops(q_len: float, k_len: float, causal: bool, heads: int, head_dim: int, head_dim_v: int | None = None) -> float:
    """Forward FLOPs of one attention block (all heads), FA3 convention."""
    dv = head_dim if head_dim_v is None else head_dim_v
    return 2.0 * heads * float(q_len) * avg_keys(q_len, k_len, causal) * (head_dim + dv)


def attention_bwd_flops(q_len: float, k_len: float, causal: bool, heads: int, head_dim: int, head_dim_v: int | None = None) -> float:
    """Backward FLOPs of one attention block: 2.5x the forward."""
    return BWD_FACTOR * attention_fwd_flops(q_len, k_len, causal, heads, head_dim, head_dim_v)


def activation_formula(model: ModelConfig) -> float:
    """Estimated activation bytes per token per layer: ``(5h + 2 kv_dim + 3 ffn) * dtype + 4 heads``.

    Norm inputs and outputs, Q/K/V, attention output, residual, MLP gate/up outputs and the
    MLP product; the fp32 log-sum-exp per head. Used to scale a measured value between shapes.
    """
    h, kvd = model.hidden, model.kv_heads * model.head_dim
    return float((5 * h + 2 * kvd + 3 * model.ffn_hidden) * model.dtype_bytes + 4 * model.heads)
