"""Bytes per GPU of training a :class:`~fcp_tune.modelcfg.ModelConfig`: model state and activations.

Every term is derived here for the Llama-style decoder fcp-tune models (RMSNorm, RoPE,
GQA attention through flash attention, SwiGLU MLP, untied LM head) and documented with its
public source in ``docs/PROFILES.md``. Notation: ``h`` hidden, ``k`` K/V width
(``kv_heads * head_dim``), ``f`` MLP width, ``a`` query heads, ``b`` bytes of the model
dtype, ``t`` the tensor-parallel degree (with sequence parallelism every activation is
split over the ``t`` GPUs of a rank), ``N`` the ranks that hold weight replicas (under FCP
every rank: data x context parallel).

Model state per parameter (ZeRO, arXiv 1910.02054; Megatron-LM's distributed optimizer):
weights ``b``, gradients ``grad_dtype``, optimizer ``8`` (Adam's two fp32 moments) plus
``4`` (fp32 master weights) when the weights are narrower than fp32. ``none`` keeps it all
on every GPU, ``optimizer`` shards the optimizer bytes over ``N``, ``fsdp`` shards all
three and adds two layers of unsharded weights (the layer running and the one prefetched).

Activations kept for backward, per token per layer (Korthikanti et al., arXiv 2205.05198,
re-derived for this layer; flash attention keeps no ``L^2`` scores):

- ``none``: norm inputs ``2 b h``, norm outputs ``2 b h``, Q ``b h``, K and V ``2 b k``,
  attention output ``b h``, softmax statistics ``4 a`` (fp32), SwiGLU gate and up
  projections and their product ``3 b f`` (Megatron's fused SwiGLU recomputes the SiLU):
  ``b (6h + 2k + 3f) + 4a``;
- ``selective`` (``--recompute-modules core_attn layernorm``): the norm outputs and the
  softmax statistics are recomputed: ``b (4h + 2k + 3f)``;
- ``full``: each layer keeps its input, ``b h``; during one layer's backward its ``none``
  activations exist once more (the working set).

Plus the logits of the rank's tokens: ``V`` values in the model dtype and their fp32 copy
for the loss.
"""

from __future__ import annotations

from fcp_tune.modelcfg import DTYPE_BYTES, ModelConfig

GIB = 2**30


def state_bytes_per_param(model: ModelConfig) -> dict[str, float]:
    """Unsharded bytes per parameter: ``weights``, ``grads``, ``optimizer`` (master + moments)."""
    tr = model.training
    master = 4 if tr.master_weights and model.dtype_bytes < 4 else 0
    return {"weights": float(model.dtype_bytes), "grads": float(DTYPE_BYTES[tr.grad_dtype]), "optimizer": 8.0 + master}


def layer_params(model: ModelConfig) -> int:
    """Parameters of one decoder layer (attention, MLP, two norms)."""
    h, kvd = model.hidden, model.kv_heads * model.head_dim
    return 2 * h * h + 2 * h * kvd + 3 * h * model.ffn_hidden + 2 * h


def state_bytes(model: ModelConfig, ranks: int) -> float:
    """Weights, gradients and optimizer state on one GPU when ``ranks`` ranks hold replicas."""
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, got {ranks}")
    per = state_bytes_per_param(model)
    tr = model.training
    p = model.num_params() / tr.tensor_parallel
    if tr.sharding == "none":
        return p * (per["weights"] + per["grads"] + per["optimizer"])
    if tr.sharding == "optimizer":
        return p * (per["weights"] + per["grads"]) + p * per["optimizer"] / ranks
    gathered = 2 * layer_params(model) / tr.tensor_parallel * per["weights"]  # running + prefetched layer
    return p * (per["weights"] + per["grads"] + per["optimizer"]) / ranks + gathered


def full_layer_bytes_per_token(model: ModelConfig) -> float:
    """Activation bytes one layer keeps per token without recompute (per GPU: split over TP)."""
    h, kvd, b = model.hidden, model.kv_heads * model.head_dim, model.dtype_bytes
    return (b * (6 * h + 2 * kvd + 3 * model.ffn_hidden) + 4 * model.heads) / model.training.tensor_parallel


def kept_bytes_per_token_layer(model: ModelConfig) -> float:
    """Activation bytes each layer keeps per token until its backward, for the model's recompute mode."""
    h, kvd, b = model.hidden, model.kv_heads * model.head_dim, model.dtype_bytes
    t = model.training.tensor_parallel
    mode = model.training.recompute
    if mode == "none":
        return full_layer_bytes_per_token(model)
    if mode == "selective":
        return b * (4 * h + 2 * kvd + 3 * model.ffn_hidden) / t
    return b * h / t


def logits_bytes_per_token(model: ModelConfig) -> float:
    """Logits per token: the model dtype and the fp32 copy the loss uses (split over TP)."""
    return model.vocab_size * (model.dtype_bytes + 4) / model.training.tensor_parallel


def activation_bytes(model: ModelConfig, tokens: float, scheme_kept_per_layer: float = 0.0) -> float:
    """Peak activation bytes on a GPU holding ``tokens`` tokens of a micro-batch.

    ``scheme_kept_per_layer``: what the attention scheme keeps per layer beyond the layer's
    own activations (e.g. gathered K/V), kept by every layer without full recompute, by the
    one layer being recomputed with it.
    """
    if tokens <= 0:
        return 0.0
    layers = model.layers
    kept = tokens * kept_bytes_per_token_layer(model) * layers + tokens * logits_bytes_per_token(model)
    if model.training.recompute == "full":
        return kept + tokens * full_layer_bytes_per_token(model) + scheme_kept_per_layer
    return kept + layers * scheme_kept_per_layer


def recompute_share(model: ModelConfig) -> tuple[float, float]:
    """What recompute adds to a step: (extra attention forwards, extra share of the layers' matmul forward).

    ``selective``: the attention core runs its forward again in backward (norms are
    memory-bound and left out); ``full``: the whole layer forward again (1 each).
    """
    mode = model.training.recompute
    if mode == "none":
        return 0.0, 0.0
    if mode == "selective":
        return 1.0, 0.0
    return 1.0, 1.0


def layer_matmul_flops_per_token(model: ModelConfig) -> float:
    """Forward matmul FLOPs per token of all decoder layers (no LM head): ``2 x`` their weights."""
    h, kvd = model.hidden, model.kv_heads * model.head_dim
    return 2.0 * model.layers * (2 * h * h + 2 * h * kvd + 3 * h * model.ffn_hidden)


# Share of the device left for what the model does not account: the CUDA context, NCCL
# communicators (hundreds of MB each) and allocator fragmentation. Used by --token-budget auto.
HEADROOM = 0.10
BUDGET_MULTIPLE = 256


def max_token_budget(model: ModelConfig, ranks: int, device_bytes: float, headroom: float = HEADROOM,
                     multiple: int = BUDGET_MULTIPLE) -> int:
    """The largest per-rank token budget (a multiple of ``multiple``) whose model state plus
    activations fit ``(1 - headroom)`` of the device; attention schemes' extra buffers are
    left to the fit check of each plan. Raises ``ValueError`` when not even ``multiple`` fits."""
    usable = device_bytes * (1.0 - headroom)
    state = state_bytes(model, ranks)
    per_token = activation_bytes(model, 1.0)
    budget = int((usable - state) // per_token) // multiple * multiple if usable > state else 0
    if budget < multiple:
        raise ValueError(
            f"no token budget fits: model state {state / GIB:.1f} GiB + {multiple} tokens of activations exceed "
            f"{1 - headroom:.0%} of the device's {device_bytes / GIB:.1f} GiB (shard the optimizer, recompute, or use TP)"
        )
    return budget


def over_device(peak_bytes: "list[float] | tuple[float, ...]", device_bytes: float | None) -> str | None:
    """One line naming the first rank whose predicted peak exceeds the device, or ``None``."""
    if device_bytes is None:
        return None
    for rank, peak in enumerate(peak_bytes):
        if peak > device_bytes:
            return (f"rank {rank}: predicted peak {peak / GIB:.1f} GiB exceeds the device's "
                    f"{device_bytes / GIB:.1f} GiB")
    return None
