"""Train a tiny Hugging Face causal LM with FCP on local processes, and check it against one process.

    python examples/hf_causal_lm.py --nproc 3 --steps 3

A randomly initialised model from a config (no download; ``--arch llama``, ``qwen2``, ``qwen3``
or ``mistral``, GQA) is trained in float64 with AdamW under an adaptive FCP policy on
``--nproc`` gloo processes: fcp-tune's attention registered with transformers, packed
variable-length batches (prompt tokens masked with ``-100``) whose plans change from step to
step. The same training then runs on one process, every sequence whole through the model's
own eager attention. The last line printed is the largest difference of the loss and of the
parameters; the exit status is 1 if it exceeds ``--tol``.
Requires the ``hf`` extra: ``pip install "fcp-tune[hf]"``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from fcp_tune.integration import FCP, sync_gradients, wave_loss
from fcp_tune.integration.hf import forward_wave, register
from fcp_tune.launch import OPTIMIZER_MODULES, run_local
from fcp_tune.policy import Policy

VOCAB, PROMPT = 96, 2  # tiny vocabulary; the first PROMPT tokens of each sequence are not learned


def tiny_config(arch: str) -> Any:
    """A tiny config of ``arch``: 2 layers, 4 query heads, 2 key/value heads (GQA), float64."""
    import transformers

    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  attention_dropout=0.0, tie_word_embeddings=False)
    if arch == "llama":
        return transformers.LlamaConfig(**common)
    if arch == "qwen2":
        return transformers.Qwen2Config(**common, use_sliding_window=False)
    if arch == "qwen3":
        return transformers.Qwen3Config(**common, head_dim=8, use_sliding_window=False)
    if arch == "mistral":
        return transformers.MistralConfig(**common, sliding_window=None)
    raise ValueError(f"unknown arch {arch!r}: llama, qwen2, qwen3 or mistral")


def build_model(arch: str, attn: str, seed: int = 0) -> torch.nn.Module:
    """The same float64 weights for any attention implementation (seeded initialisation)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(arch), attn_implementation=attn).double()


def batch(step: int) -> dict:
    """Global batch ``step``: 5-9 sequences of 1-70 tokens (some shorter than 2d), prompts masked."""
    gen = torch.Generator().manual_seed(1000 + step)
    n = int(torch.randint(5, 10, (1,), generator=gen))
    lengths = torch.randint(1, 71, (n,), generator=gen).tolist()
    lengths[0] = 2  # a sequence shorter than 2 * degree: ranks holding none of it
    ids = [torch.randint(0, VOCAB, (L,), generator=gen) for L in lengths]
    labels = [torch.cat([torch.full((min(PROMPT, L),), -100), t[PROMPT:]]) for t, L in zip(ids, lengths)]
    return {"input_ids": ids, "labels": labels}


def policy(world: int, scheme: str = "ring") -> Policy:
    """Adaptive FCP: at most 48 tokens per rank and wave, so long sequences need several ranks."""
    return Policy(kind="adaptive", world_size=world, token_budget=48, scheme=scheme)


def train_rank(rank: int, world: int, arch: str, steps: int, lr: float, scheme: str = "ring") -> dict:
    """Body of every rank: the FCP training loop. Returns losses, layouts and (rank 0) parameters."""
    register()
    model = build_model(arch, "fcp")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses, layouts = [], []
    with FCP(policy(world, scheme)) as fcp:
        for step in fcp.stream(batch(s) for s in range(steps)):
            part = 0.0
            for wave in step.waves:
                loss = wave_loss(forward_wave(model, wave), wave)
                loss.backward()
                part += float(loss.detach())
            losses.append(sync_gradients(model.parameters(), part))
            layouts.append(tuple(sorted(step.plan.ranges())))
            opt.step()
            opt.zero_grad()
    params = {n: p.detach().clone() for n, p in model.named_parameters()} if rank == 0 else None
    return {"losses": losses, "layouts": layouts, "params": params}


def train_reference(arch: str, steps: int, lr: float) -> dict:
    """The same training on one process: each sequence whole, the model's SDPA attention (float64)."""
    model = build_model(arch, "sdpa")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for s in range(steps):
        b = batch(s)
        count = sum(int((lab[1:] != -100).sum()) for lab in b["labels"])
        total = 0.0
        for ids, lab in zip(b["input_ids"], b["labels"]):
            logits = model(input_ids=ids[None], use_cache=False).logits[0]
            loss = F.cross_entropy(logits[:-1], lab[1:], ignore_index=-100, reduction="sum") / count
            loss.backward()
            total += float(loss.detach())
        losses.append(total)
        opt.step()
        opt.zero_grad()
    return {"losses": losses, "params": {n: p.detach().clone() for n, p in model.named_parameters()}}


def max_differences(dist_out: dict, ref: dict) -> tuple[float, float]:
    """Largest |loss difference| over steps and |parameter difference| over all parameters."""
    dl = max(abs(a - b) for a, b in zip(dist_out["losses"], ref["losses"]))
    dp = max(float((dist_out["params"][n] - p).abs().max()) for n, p in ref["params"].items())
    return dl, dp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nproc", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--arch", default="llama", choices=["llama", "qwen2", "qwen3", "mistral"])
    ap.add_argument("--scheme", default="ring", choices=["allgather", "ring", "ulysses"])
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--tol", type=float, default=1e-9)
    args = ap.parse_args(argv)
    register()  # imports transformers once, before the ranks are forked
    per_rank = run_local(train_rank, args.nproc, args=(args.arch, args.steps, args.lr, args.scheme), timeout=600,
                         preload=OPTIMIZER_MODULES)
    out = per_rank[0]
    for s, (loss, layout) in enumerate(zip(out["losses"], out["layouts"])):
        groups = ", ".join(f"[{a},{a + n})" for a, n in layout if n > 1) or "single ranks only"
        print(f"step {s}: loss {loss:.6f}  groups {groups}")
    dl, dp = max_differences(out, train_reference(args.arch, args.steps, args.lr))
    print(f"max difference vs 1 process float64: loss {dl:.3e}, params {dp:.3e}")
    return 0 if max(dl, dp) <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
