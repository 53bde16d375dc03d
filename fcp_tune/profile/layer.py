"""The token-linear reference layer the profiler times, and what a layer keeps for backward.

"Token-linear" work is everything in a decoder layer whose cost grows with the token
count only: RMSNorms, the fused QKV and output projections, the SwiGLU MLP and the
residual adds. :class:`LinearLayer` is exactly that with the attention core replaced by
the identity on Q (the core is profiled separately, block by block), so timing a stack of
them gives seconds per token per layer and an effective FLOP/s for the cost model.

:func:`activation_bytes_per_token` counts the bytes autograd saves for backward in one
layer (storage-deduplicated, via saved-tensor hooks) and adds what the real attention core
saves (Q, K, V, output, fp32 log-sum-exp). :func:`activation_formula` is the analytic
estimate the cost model uses to carry a measurement over to another model's shape.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from fcp_tune.modelcfg import ModelConfig

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a ``ModelConfig.dtype`` name."""
    return _DTYPES[name]


def linear_flops_per_token_per_layer(model: ModelConfig) -> float:
    """Forward+backward matmul FLOPs per token of one layer (6 x matmul weights)."""
    h, kvd = model.hidden, model.kv_heads * model.head_dim
    return 6.0 * (2 * h * h + 2 * h * kvd + 3 * h * model.ffn_hidden)


def activation_formula(model: ModelConfig) -> float:
    """Estimated activation bytes per token per layer: ``(5h + 2 kv_dim + 3 ffn) * dtype + 4 heads``.

    Norm inputs and outputs, Q/K/V, attention output, residual, MLP gate/up outputs and the
    MLP product; the fp32 log-sum-exp per head. Used to scale a measured value between shapes.
    """
    h, kvd = model.hidden, model.kv_heads * model.head_dim
    return float((5 * h + 2 * kvd + 3 * model.ffn_hidden) * model.dtype_bytes + 4 * model.heads)


def _rmsnorm(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps).to(x.dtype) * w


class LinearLayer(nn.Module):
    """One decoder layer without the attention core (Q passes straight to the output projection)."""

    def __init__(self, model: ModelConfig, device: torch.device | str = "cpu") -> None:
        super().__init__()
        h, kvd, f = model.hidden, model.kv_heads * model.head_dim, model.ffn_hidden
        dt = torch_dtype(model.dtype)
        self.hidden = h
        self.norm1 = nn.Parameter(torch.ones(h, dtype=dt, device=device))
        self.norm2 = nn.Parameter(torch.ones(h, dtype=dt, device=device))
        self.wqkv = nn.Linear(h, h + 2 * kvd, bias=False, dtype=dt, device=device)
        self.wo = nn.Linear(h, h, bias=False, dtype=dt, device=device)
        self.w13 = nn.Linear(h, 2 * f, bias=False, dtype=dt, device=device)
        self.w2 = nn.Linear(f, h, bias=False, dtype=dt, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.wqkv(_rmsnorm(x, self.norm1))[:, : self.hidden]
        x = x + self.wo(q)
        g, u = self.w13(_rmsnorm(x, self.norm2)).chunk(2, dim=-1)
        return x + self.w2(nn.functional.silu(g) * u)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall seconds of ``fn()`` after ``warmup`` untimed calls (device-synchronised)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    return times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])


def measure_linear(model: ModelConfig, tokens: int, device: torch.device, warmup: int, repeats: int) -> dict:
    """Time forward+backward of ``model.layers`` :class:`LinearLayer` s on ``tokens`` tokens.

    Returns ``seconds_per_token_per_layer``, ``flops_per_token_per_layer`` and the Adam
    step's ``optimizer_s_per_param`` (same parameters, ``foreach`` implementation).
    """
    torch.manual_seed(0)
    layers = nn.Sequential(*[LinearLayer(model, device) for _ in range(model.layers)])
    x = torch.randn(tokens, model.hidden, dtype=torch_dtype(model.dtype), device=device, requires_grad=True)

    def step() -> None:
        layers(x).float().square().mean().backward()

    t = median_time(step, device, warmup, repeats)
    opt = torch.optim.Adam(layers.parameters(), lr=1e-6)
    t_opt = median_time(opt.step, device, warmup, repeats)
    n_params = sum(p.numel() for p in layers.parameters())
    return {
        "seconds_per_token_per_layer": t / (tokens * model.layers),
        "flops_per_token_per_layer": linear_flops_per_token_per_layer(model),
        "optimizer_s_per_param": t_opt / n_params,
    }


def activation_bytes_per_token(model: ModelConfig, tokens: int = 64) -> float:
    """Bytes one layer keeps for backward per token: saved tensors of :class:`LinearLayer`
    (each storage counted once) plus the attention core's Q, K, V, output and fp32 lse."""
    torch.manual_seed(0)
    layer = LinearLayer(model)
    params = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            storages[s.data_ptr()] = s.nbytes()
        return t

    x = torch.randn(tokens, model.hidden, dtype=torch_dtype(model.dtype), requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = layer(x)
    del out
    h, kvd = model.hidden, model.kv_heads * model.head_dim
    core = (2 * h + 2 * kvd) * model.dtype_bytes + 4 * model.heads
    return sum(storages.values()) / tokens + core
