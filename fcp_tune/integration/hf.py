"""Hugging Face ``transformers`` causal LMs trained with FCP (optional extra ``hf``).

:func:`register` adds fcp-tune's context-parallel attention to transformers' attention-function
registry (``AttentionInterface``) under the name ``"fcp"``, and no mask function: transformers then
builds no attention mask at all (the causal, per-sequence structure comes from the wave's
``cu_seqlens``), so no ``T x T`` mask is ever allocated. An
unmodified model built with ``attn_implementation="fcp"`` (Llama, Qwen2/3, Mistral families:
packed varlen inputs, GQA) then runs each wave's packed local tokens::

    register()
    model = AutoModelForCausalLM.from_config(config, attn_implementation="fcp")
    for wave in step.waves:
        logits = forward_wave(model, wave)       # input_ids (1, T_local), per-sequence position_ids
        wave_loss(logits, wave).backward()

The model sees one packed row; RoPE takes the wave's ``position_ids`` (restarting at every
sequence, right in every chunk); the attention reads the running wave (``with wave:``) for
its ``cu_seqlens``, group and scheme. Not supported (raise): attention dropout, logit
soft-capping, a sliding window shorter than a sequence, more than one row.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from fcp_tune.attention import cp_attention
from fcp_tune.integration.session import WaveInputs, current_wave

NAME = "fcp"


def fcp_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    dropout: float = 0.0,
    scaling: Optional[float] = None,
    is_causal: Optional[bool] = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: ``query`` ``(1, H, T, D)``, ``key``/``value``
    ``(1, H_kv, T, D / Dv)`` -> ``(1, T, H, Dv)``, no attention weights."""
    wave = current_wave()
    if wave is None:
        raise RuntimeError("fcp attention runs inside `with wave:` (use fcp_tune.integration.hf.forward_wave)")
    if dropout:
        raise ValueError(f"fcp attention has no dropout (got {dropout}); set attention_dropout=0.0")
    if kwargs.get("softcap"):
        raise ValueError("fcp attention does not support logit soft-capping")
    if query.shape[0] != 1:
        raise ValueError(f"fcp attention takes one packed row, got a batch of {query.shape[0]}")
    window = kwargs.get("sliding_window")
    longest = max((b - a for a, b in zip(wave.cu_seqlens, wave.cu_seqlens[1:])), default=0)
    if window is not None and longest > int(window):
        raise ValueError(f"a sequence of {longest} tokens exceeds the sliding window {window}: not supported")
    causal = getattr(module, "is_causal", True) if is_causal is None else bool(is_causal)
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))
    pad = q.shape[0] - wave.input_ids.numel()  # the placeholder row of a rank holding no token
    if pad:
        q, k, v = q[:-pad], k[:-pad], v[:-pad]
    out = cp_attention(q, k, v, wave.cu_seqlens, group=wave.group, causal=causal, scheme=wave.scheme, scale=scaling)
    if pad:
        out = torch.cat([out, out.new_zeros((pad,) + tuple(out.shape[1:]))])
    return out.unsqueeze(0), None


def register(name: str = NAME) -> str:
    """Register the attention with transformers; return ``name``.

    Deliberately no ``AttentionMaskInterface`` entry: for an implementation without one,
    transformers skips mask creation (and its packed-sequence detection, which fails on a
    rank holding no token).
    """
    from transformers import AttentionInterface

    AttentionInterface.register(name, fcp_attention_forward)
    return name


def forward_wave(model: torch.nn.Module, wave: WaveInputs, **kwargs: Any) -> torch.Tensor:
    """Logits ``(T_local, vocab)`` of ``wave``'s tokens through a transformers causal LM.

    A rank holding no token must still run its group's attention (a collective), but
    transformers' layers cannot reshape zero tokens: the model then runs one placeholder token
    that attention leaves out (its output row is zero) and whose logits are dropped, so it
    adds nothing to the loss or the gradients.
    """
    ids, pos = wave.input_ids.unsqueeze(0), wave.position_ids.unsqueeze(0)
    empty = ids.shape[1] == 0
    if empty:
        ids, pos = ids.new_zeros((1, 1)), pos.new_zeros((1, 1))
    with wave:
        out = model(input_ids=ids, position_ids=pos, use_cache=False, **kwargs)
    return out.logits[0, :0] if empty else out.logits[0]
