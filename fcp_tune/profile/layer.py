"""Token-linear work and activation memory of the executor's own decoder, measured.

"Token-linear" work is everything whose cost grows with the token count only: RMSNorms,
RoPE, the Q/K/V/output projections, the SwiGLU MLP, residual adds, the embedding, the LM
head and the loss. :func:`measure_linear` times forward+backward of the executor's
:class:`~fcp_tune.executor.model.Decoder` with the attention core replaced by the identity
on Q (K and V stay in the graph through a zero-weighted sum): the core is profiled block
by block elsewhere. It also times one AdamW step (the executor's optimizer) per parameter.

:func:`activation_bytes_per_token` counts the bytes autograd keeps for backward in one
decoder :class:`~fcp_tune.executor.model.Block` (each storage once, via saved-tensor
hooks) plus what the real attention core keeps (Q, K, V and an fp32 log-sum-exp per head;
its output stands in as the identity's). The cost model carries the number over to
other shapes with :func:`~fcp_tune.profile.flops.activation_formula`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

import torch
import torch.nn.functional as F

from fcp_tune.modelcfg import ModelConfig

MAX_MEASURED_LAYERS = 4
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a ``ModelConfig.dtype`` name."""
    return _DTYPES[name]


def identity_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Stand-in for the attention core: Q itself, with K and V kept in the autograd graph."""
    return q + (k.sum() + v.sum()) * 0.0


def sync_device(device: torch.device) -> None:
    """Wait for queued device work (CUDA); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall seconds of ``fn()`` after ``warmup`` untimed calls (device-synchronised)."""
    for _ in range(warmup):
        fn()
    sync_device(device)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        sync_device(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    return times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])


def measure_linear(model: ModelConfig, tokens: int, device: torch.device, warmup: int, repeats: int) -> dict:
    """Seconds per token of the decoder's token-linear work (fwd + bwd, all layers, LM head, loss).

    Returns ``seconds_per_token``, ``flops_per_token`` (``model.linear_flops_per_token()``)
    and ``optimizer_s_per_param`` (one AdamW step over the same parameters). A model deeper
    than :data:`MAX_MEASURED_LAYERS` is measured on its first layers only (a full 8B model,
    its gradients and AdamW states do not fit one GPU next to the activations) and the
    time scaled by the FLOP ratio, i.e. at the truncated model's effective rate.
    """
    from fcp_tune.executor.model import build_model  # the executor's decoder, imported when measuring

    torch.manual_seed(0)
    measured = replace(model, layers=min(model.layers, MAX_MEASURED_LAYERS))
    net = build_model(measured, seed=0, device=device)
    ids = torch.randint(0, model.vocab_size, (tokens,), device=device)
    positions = torch.arange(tokens, device=device)
    targets = torch.randint(0, model.vocab_size, (tokens,), device=device)

    def step() -> None:
        logits = net(ids, positions, identity_attention)
        F.cross_entropy(logits.float(), targets).backward()

    t = median_time(step, device, warmup, repeats)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-6)
    t_opt = median_time(opt.step, device, warmup, repeats)
    n_params = sum(p.numel() for p in net.parameters())
    scale = model.linear_flops_per_token() / measured.linear_flops_per_token()
    return {
        "seconds_per_token": t / tokens * scale,
        "flops_per_token": model.linear_flops_per_token(),
        "measured_layers": measured.layers,
        "optimizer_s_per_param": t_opt / n_params,
    }


def activation_bytes_per_token(model: ModelConfig, tokens: int = 64) -> float:
    """Bytes one decoder block keeps for backward, per token (see the module docstring)."""
    from fcp_tune.executor.model import Block

    torch.manual_seed(0)
    block = Block(model).to(dtype=torch_dtype(model.dtype))
    params = {p.untyped_storage().data_ptr() for p in block.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            storages[s.data_ptr()] = s.nbytes()
        return t

    x = torch.randn(tokens, model.hidden, dtype=torch_dtype(model.dtype), requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x, torch.arange(tokens), identity_attention)
    kvd = model.kv_heads * model.head_dim
    core = (model.hidden + 2 * kvd) * model.dtype_bytes + 4 * model.heads
    return sum(storages.values()) / tokens + core
