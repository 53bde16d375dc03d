"""Hugging Face causal LMs trained with FCP: parity with single-process float64 training.

The example ``examples/hf_causal_lm.py`` is the code under test: a tiny Llama-architecture
model (GQA) trained 3 steps with AdamW under an adaptive policy whose groups change between
steps, on 3 and 4 gloo processes (one thread each), against the same training on one
process (each sequence whole, transformers' own SDPA attention, float64). A negative
control shifts the labels per shard instead of on the global sequence: parity must fail.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib

import pytest
import torch

pytest.importorskip("transformers")

import fcp_tune.integration.session as session_mod  # noqa: E402
from fcp_tune.integration import shard_sequences, shift_labels  # noqa: E402
from fcp_tune.launch import OPTIMIZER_MODULES, run_local  # noqa: E402

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "hf_causal_lm.py"
STEPS, LR, TOL = 3, 1e-2, 1e-9


def _example():
    spec = importlib.util.spec_from_file_location("hf_causal_lm_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def example():
    mod = _example()
    mod.register()
    return mod


@pytest.fixture(scope="module")
def reference(example):
    return example.train_reference("llama", STEPS, LR)


def _run(example, world, scheme="ring", arch="llama"):
    return run_local(example.train_rank, world, args=(arch, STEPS, LR, scheme), timeout=300,
                     collective_timeout=120, preload=OPTIMIZER_MODULES)[0]


@pytest.mark.slow
@pytest.mark.parametrize("world", [3, 4])
def test_llama_gqa_trains_like_one_process_in_float64(example, reference, world):
    out = _run(example, world)
    assert len(set(out["layouts"])) > 1  # the adaptive plans change groups between steps
    assert any(n > 1 for layout in out["layouts"] for _, n in layout)  # real context parallelism
    dl, dp = example.max_differences(out, reference)
    assert dl <= TOL and dp <= TOL, (dl, dp)
    assert reference["losses"][0] > 1.0  # a real cross-entropy
    assert max(float(p.abs().max()) for p in reference["params"].values()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("arch, scheme", [("qwen2", "allgather"), ("qwen3", "ulysses"), ("mistral", "ring")])
def test_other_families_and_schemes_train_like_one_process(example, arch, scheme):
    dl, dp = example.max_differences(_run(example, 2, scheme, arch), example.train_reference(arch, STEPS, LR))
    assert dl <= TOL and dp <= TOL, (arch, scheme, dl, dp)


def _shift_per_shard(tokens, targets, seq_ids, degree, rank):
    """The classic bug: labels shifted inside each rank's shard instead of on the global sequence."""
    sh = shard_sequences(tokens, targets, seq_ids, degree, rank)
    cu = sh.local_cu_seqlens
    # each local share (early + late chunk) shifted as if it were contiguous
    local = [shift_labels(sh.labels.new_tensor(sh.input_ids[a:b])) for a, b in zip(cu, cu[1:])]
    labels = torch.cat(local) if local else sh.labels
    return dataclasses.replace(sh, labels=labels, n_targets=int((labels != -100).sum()))


@pytest.mark.slow
def test_labels_shifted_per_shard_break_parity(example, reference, monkeypatch):
    monkeypatch.setattr(session_mod, "shard_sequences", _shift_per_shard)  # forked ranks inherit it
    dl, dp = example.max_differences(_run(example, 3), reference)
    assert dl > 1e-6 and dp > 1e-9, (dl, dp)


BATCH = [torch.tensor([5, 9]), torch.tensor([7])]  # on a group of 3, rank 1 holds no token of either


def _empty_rank(rank, world, example):
    from fcp_tune.integration import FCP, sync_gradients, wave_loss
    from fcp_tune.integration.hf import forward_wave
    from fcp_tune.policy import Policy

    model = example.build_model("llama", "fcp")
    with FCP(Policy(kind="static", degree=3, world_size=3, token_budget=48)) as fcp:
        step = fcp.step(BATCH)
        tokens = [int(w.input_ids.numel()) for w in step.waves]
        part = 0.0
        for wave in step.waves:
            loss = wave_loss(forward_wave(model, wave), wave)
            loss.backward()
            part += float(loss.detach())
    total = sync_gradients(model.parameters(), part)
    return total, tokens, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.slow
def test_a_rank_holding_no_token_runs_its_group(example):
    """transformers cannot reshape zero tokens: a placeholder token runs and adds nothing."""
    out = run_local(_empty_rank, 3, args=(example,), timeout=120, collective_timeout=60)
    assert out[1][1] == [0] and out[0][1] == [2] and out[2][1] == [1]
    ref = example.build_model("llama", "sdpa")
    count = sum(len(t) - 1 for t in BATCH)
    for ids in BATCH:
        logits = ref(input_ids=ids[None], use_cache=False).logits[0]
        (torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="sum") / count).backward()
    total, _, grads = out[1]
    for n, p in ref.named_parameters():
        assert float((grads[n] - p.grad).abs().max()) <= TOL, n


def test_attention_outside_a_wave_is_a_clear_error(example):
    model = example.build_model("llama", "fcp")
    with pytest.raises(RuntimeError, match="with wave"):
        model(input_ids=torch.zeros(1, 4, dtype=torch.long))
