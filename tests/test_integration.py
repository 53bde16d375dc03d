"""The public integration API: the doc's loop as written, FSDP2, shards, groups.

``docs/INTEGRATION.md``'s loop (extracted from the document and run unchanged on 3 and 4 gloo
processes, one thread each) matches single-process float64 training of the same model on the
same batches (every sequence whole, dense reference attention): loss and every parameter
within 1e-9. The same holds with the model sharded by FSDP2. Pure checks: labels are shifted
on the global sequence (a chunk's last label is the next chunk's first token), positions
restart per sequence; a one-rank group never communicates whatever is passed for it.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from fcp_tune.attention import WORLD, cp_attention
from fcp_tune.attention.reference import reference_attention
from fcp_tune.integration import IGNORE_INDEX, shard_sequences, shift_labels
from fcp_tune.launch import OPTIMIZER_MODULES, run_local

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "INTEGRATION.md"
TOL = 1e-9


def _doc_module(tmp_path):
    text = DOC.read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert "def train(" in code and 40 <= len(code.splitlines()) <= 60
    path = tmp_path / "train_fcp.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("train_fcp", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _reference(mod, steps=3, lr=1e-2):
    """The doc's training on one process: each sequence whole, dense float64 attention."""
    from fcp_tune.executor.model import build_model
    from fcp_tune.modelcfg import ModelConfig

    cfg = ModelConfig(vocab_size=64, hidden=32, layers=2, heads=4, kv_heads=2, ffn_hidden=48, dtype="float64")
    model = build_model(cfg, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for batch in mod.batches(steps, cfg.vocab_size):
        count = sum(len(t) - 1 for t in batch)
        total = 0.0
        for ids in batch:
            n = len(ids)
            logits = model(ids, torch.arange(n), lambda q, k, v, n=n: reference_attention(q, k, v, [0, n]))
            loss = F.cross_entropy(logits[:-1], ids[1:], reduction="sum") / count
            loss.backward()
            total += float(loss.detach())
        losses.append(total)
        opt.step()
        opt.zero_grad()
    return losses, {n: p.detach().clone() for n, p in model.named_parameters()}


def _doc_rank(rank, world, mod):
    model, losses = mod.train()
    return losses, ({n: p.detach().clone() for n, p in model.named_parameters()} if rank == 0 else None)


def _fsdp_rank(rank, world, mod, steps=3, lr=1e-2):
    """The doc's FSDP2 variant of the loop (every rank runs every wave, gradients summed)."""
    from torch.distributed.fsdp import fully_shard

    from fcp_tune.executor.model import build_model
    from fcp_tune.integration import FCP, reduce_loss, wave_loss
    from fcp_tune.modelcfg import ModelConfig
    from fcp_tune.policy import Policy

    cfg = ModelConfig(vocab_size=64, hidden=32, layers=2, heads=4, kv_heads=2, ffn_hidden=48, dtype="float64")
    model = build_model(cfg, seed=0)
    for block in model.blocks:
        fully_shard(block).set_gradient_divide_factor(1.0)
    fully_shard(model).set_gradient_divide_factor(1.0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    # static degree 2 on 3 ranks: rank 2 sits every wave out, so idle (empty) waves run too
    policy = Policy(kind="static", degree=2, world_size=world, token_budget=48)
    losses, idle = [], 0
    with FCP(policy, include_idle=True) as fcp:
        for step in fcp.stream(mod.batches(steps, cfg.vocab_size)):
            assert len(step.waves) == len(step.plan.waves)  # every rank runs every wave
            idle += sum(w.idle for w in step.waves)
            part = 0.0
            for wave in step.waves:
                loss = wave_loss(model(wave.input_ids, wave.position_ids, wave.attention), wave)
                loss.backward()
                part += loss.item()
            losses.append(reduce_loss(part))
            opt.step()
            opt.zero_grad()
    params = {n: p.full_tensor().detach().clone() for n, p in model.named_parameters()}
    return losses, (params if rank == 0 else None), idle


def _max_diff(losses, params, ref_losses, ref_params):
    dl = max(abs(a - b) for a, b in zip(losses, ref_losses))
    dp = max(float((params[n] - p).abs().max()) for n, p in ref_params.items())
    return dl, dp


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    mod = _doc_module(tmp_path_factory.mktemp("doc"))
    return mod, _reference(mod)


@pytest.mark.slow
@pytest.mark.parametrize("world", [3, 4])
def test_doc_loop_runs_as_written_and_matches_float64(doc, world):
    mod, (ref_losses, ref_params) = doc
    per_rank = run_local(_doc_rank, world, args=(mod,), timeout=240, collective_timeout=60,
                         preload=OPTIMIZER_MODULES)
    losses, params = per_rank[0]
    assert all(r[0] == losses for r in per_rank)  # every rank reports the global loss
    dl, dp = _max_diff(losses, params, ref_losses, ref_params)
    assert dl <= TOL and dp <= TOL, (dl, dp)
    assert ref_losses[0] > 1.0


@pytest.mark.slow
def test_fsdp2_matches_float64(doc):
    mod, (ref_losses, ref_params) = doc
    per_rank = run_local(_fsdp_rank, 3, args=(mod,), timeout=240, collective_timeout=60,
                         preload=OPTIMIZER_MODULES)
    losses, params, _ = per_rank[0]
    dl, dp = _max_diff(losses, params, ref_losses, ref_params)
    assert dl <= TOL and dp <= TOL, (dl, dp)
    assert sum(r[2] for r in per_rank) > 0  # some rank sat a wave out and ran it empty


def test_labels_are_shifted_on_the_global_sequence():
    toks = [torch.arange(100, 117), torch.arange(200, 205), torch.tensor([7])]
    lab = [shift_labels(t) for t in toks]
    for d in (1, 2, 3, 5):
        got = {}
        for r in range(d):
            sh = shard_sequences(toks, lab, (0, 1, 2), d, r)
            for s, (a, b) in enumerate(zip(sh.local_cu_seqlens, sh.local_cu_seqlens[1:])):
                for i, p, t in zip(sh.input_ids[a:b].tolist(), sh.position_ids[a:b].tolist(), sh.labels[a:b].tolist()):
                    got[(s, p)] = (i, t)
        for s, t in enumerate(toks):  # every token once, at its own position, with the next token as label
            for p in range(len(t)):
                nxt = int(t[p + 1]) if p + 1 < len(t) else IGNORE_INDEX
                assert got[(s, p)] == (int(t[p]), nxt)
        assert len(got) == sum(len(t) for t in toks)


def _alone_rank(rank, world):
    cu = [0, 5]
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(5, 2, 4, dtype=torch.float64, generator=gen) for _ in range(3))
    ref = reference_attention(q, k, v, cu)
    singles = [dist.new_group([r]) for r in range(world)]
    outs = []
    if rank == 0:  # the others never call: any communication would hang until the timeout
        outs.append(cp_attention(q, k, v, cu, group=None))
        outs.append(cp_attention(q, k, v, cu, group=singles[0], scheme="ring"))
    else:
        outs.append(cp_attention(q, k, v, cu, group=singles[rank], scheme="ulysses"))
    err = max(float((o - ref).abs().max()) for o in outs)
    with pytest.raises(ValueError, match="tokens"):  # None is this process alone, never the world
        cp_attention(q[:2], k[:2], v[:2], cu, group=None)
    dist.barrier()
    return err, repr(WORLD)


def test_a_one_rank_group_never_communicates():
    out = run_local(_alone_rank, 3, timeout=60, collective_timeout=20)
    assert all(e < 1e-12 for e, _ in out)
    assert out[0][1] == "fcp_tune.attention.WORLD"
