"""A small Llama-style decoder that runs on a rank's share of a packed batch.

RMSNorm, RoPE with each token's true position inside its own sequence, GQA attention
through an injectable attention function (``cp_attention`` in training, the dense float64
reference in tests), SwiGLU MLP, untied LM head. Token-wise layers need no communication;
only attention sees the context-parallel group.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from fcp_tune.modelcfg import ModelConfig

# attention(q, k, v) -> out on packed local tokens; the caller binds cu_seqlens/group/scheme.
AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary embedding of ``x`` ``(T, H, D)`` at integer ``positions`` ``(T,)`` (half-split form)."""
    d = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d))
    ang = positions.to(torch.float64).unsqueeze(-1) * inv  # (T, D/2)
    cos, sin = ang.cos().to(x.dtype).unsqueeze(1), ang.sin().to(x.dtype).unsqueeze(1)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, hd = cfg.hidden, cfg.head_dim
        self.attn_norm = RMSNorm(h)
        self.wq = nn.Linear(h, cfg.heads * hd, bias=False)
        self.wk = nn.Linear(h, cfg.kv_heads * hd, bias=False)
        self.wv = nn.Linear(h, cfg.kv_heads * hd, bias=False)
        self.wo = nn.Linear(cfg.heads * hd, h, bias=False)
        self.mlp_norm = RMSNorm(h)
        self.w_gate = nn.Linear(h, cfg.ffn_hidden, bias=False)
        self.w_up = nn.Linear(h, cfg.ffn_hidden, bias=False)
        self.w_down = nn.Linear(cfg.ffn_hidden, h, bias=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, attention: AttentionFn) -> torch.Tensor:
        cfg = self.cfg
        t = x.shape[0]
        a = self.attn_norm(x)
        q = rope(self.wq(a).view(t, cfg.heads, cfg.head_dim), positions, cfg.rope_theta)
        k = rope(self.wk(a).view(t, cfg.kv_heads, cfg.head_dim), positions, cfg.rope_theta)
        v = self.wv(a).view(t, cfg.kv_heads, cfg.head_dim)
        x = x + self.wo(attention(q, k, v).reshape(t, cfg.heads * cfg.head_dim))
        m = self.mlp_norm(x)
        return x + self.w_down(F.silu(self.w_gate(m)) * self.w_up(m))


class Decoder(nn.Module):
    """The decoder; ``forward`` maps local token ids and positions to logits."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden)
        self.lm_head = nn.Linear(cfg.hidden, cfg.vocab_size, bias=False)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, attention: AttentionFn) -> torch.Tensor:
        x = self.embed(ids)
        for blk in self.blocks:
            x = blk(x, positions, attention)
        return self.lm_head(self.norm(x))


def build_model(cfg: ModelConfig, seed: int, device: Optional[torch.device] = None) -> Decoder:
    """The same weights on every rank: a fixed seed, scaled-normal initialisation."""
    dtype = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        cfg.dtype
    ]
    gen = torch.Generator().manual_seed(seed)
    model = Decoder(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.02)
    return model.to(device=device or torch.device("cpu"), dtype=dtype)
