"""Memory terms against figures computed by hand for a small model (docs/PROFILES.md, fcp_tune.memory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcp_tune import memory
from fcp_tune.costmodel import CostModel
from fcp_tune.errors import FcpTuneError
from fcp_tune.modelcfg import PRESETS, ModelConfig, Training, load_model_config
from fcp_tune.profile.schema import load_profile
REPO = Path(__file__).resolve().parents[1]

# h = 8, head_dim 4, k = kv_heads * head_dim = 4, f = 16, V = 100, 2 layers, bf16.
# Per layer: 2h^2 (Q, O) + 2hk (K, V) + 3hf (SwiGLU) + 2h (norms) = 128 + 64 + 384 + 16 = 592.
# Total: 2 V h (embedding + head) + 2 x 592 + h (final norm) = 1600 + 1184 + 8 = 2792.
SMALL = ModelConfig(vocab_size=100, hidden=8, layers=2, heads=2, kv_heads=1, ffn_hidden=16, dtype="bfloat16")


def _with(**kw) -> ModelConfig:
    return SMALL.with_training(**kw)


def test_parameter_count_by_hand():
    assert SMALL.num_params() == 2792
    assert memory.layer_params(SMALL) == 592


@pytest.mark.parametrize(
    "training, ranks, expected",
    [
        # 2 (bf16 weights) + 4 (fp32 grads) + 12 (fp32 master + two moments) = 18 B/param everywhere
        (dict(sharding="none"), 4, 2792 * 18),
        # distributed optimizer: 6 B/param + 12 B/param over the 4 replicas
        (dict(sharding="optimizer"), 4, 2792 * 6 + 2792 * 12 / 4),
        # FSDP: 18 B/param over 4, plus two unsharded layers of bf16 weights (2 x 592 x 2 B)
        (dict(sharding="fsdp"), 4, 2792 * 18 / 4 + 2 * 592 * 2),
        # bf16 gradients: 2 + 2 + 12
        (dict(sharding="none", grad_dtype="bfloat16"), 4, 2792 * 16),
        # no master copy: 2 + 4 + 8
        (dict(sharding="none", master_weights=False), 1, 2792 * 14),
        # tensor parallel 2: each GPU holds half of the parameters
        (dict(sharding="optimizer", tensor_parallel=2), 4, 1396 * 6 + 1396 * 12 / 4),
    ],
)
def test_state_bytes_by_hand(training, ranks, expected):
    assert memory.state_bytes(_with(**training), ranks) == pytest.approx(expected)


def test_fp32_weights_keep_no_master_copy():
    tiny = PRESETS["tiny"]  # float32: 4 + 4 + 8 = 16 B/param (ZeRO's 16 for fp32 training)
    assert memory.state_bytes(tiny, 2) == pytest.approx(tiny.num_params() * 16)


@pytest.mark.parametrize(
    "recompute, per_layer, total_10_tokens",
    [
        # none: b (6h + 2k + 3f) + 4a = 2 (48 + 8 + 48) + 8 = 216 B per token per layer;
        # 10 tokens x 2 layers x 216 + logits 10 x 100 x (2 + 4) = 4320 + 6000
        ("none", 216, 10320),
        # selective: b (4h + 2k + 3f) = 2 (32 + 8 + 48) = 176; 10 x 2 x 176 + 6000
        ("selective", 176, 9520),
        # full: each layer keeps its input, b h = 16; plus one layer's 216 during its recompute
        ("full", 16, 10 * 2 * 16 + 6000 + 10 * 216),
    ],
)
def test_activation_bytes_by_hand(recompute, per_layer, total_10_tokens):
    m = _with(recompute=recompute)
    assert memory.kept_bytes_per_token_layer(m) == pytest.approx(per_layer)
    assert memory.activation_bytes(m, 10) == pytest.approx(total_10_tokens)


def test_scheme_kept_bytes_counted_per_layer_or_once():
    assert memory.activation_bytes(_with(recompute="none"), 10, 50.0) == pytest.approx(10320 + 2 * 50)
    assert memory.activation_bytes(_with(recompute="full"), 10, 50.0) == pytest.approx(10 * 2 * 16 + 6000 + 2160 + 50)


def test_tensor_parallel_splits_activations():
    m = _with(recompute="none", tensor_parallel=2)
    assert memory.kept_bytes_per_token_layer(m) == pytest.approx(108)
    assert memory.activation_bytes(m, 10) == pytest.approx(10320 / 2)


def test_training_fields_validated_and_round_trip():
    with pytest.raises(FcpTuneError, match="model.training.sharding"):
        Training(sharding="zero2")
    with pytest.raises(FcpTuneError, match="model.training.recompute"):
        Training(recompute="some")
    with pytest.raises(FcpTuneError, match="tensor_parallel"):
        Training(tensor_parallel=0)
    m = _with(sharding="fsdp", recompute="selective")
    assert ModelConfig.from_dict(m.to_dict()) == m
    with pytest.raises(FcpTuneError, match="unknown model.training"):
        ModelConfig.from_dict({**SMALL.to_dict(), "training": {"zero": 3}})


def test_presets_default_to_what_they_train_with():
    llama = load_model_config("llama3-8b")
    assert (llama.training.sharding, llama.training.recompute) == ("optimizer", "full")
    # a profile recorded without the field gets the preset's setup for the preset's shape
    d = llama.to_dict()
    assert "training" not in d and ModelConfig.from_dict(d) == llama


def test_cost_model_memory_and_recompute_time():
    prof = load_profile(str(REPO / "profiles" / "h100-64-reference.yaml"))
    llama = prof.model
    full = CostModel.from_profile(prof, llama, world_size=64)
    sel = CostModel.from_profile(prof, llama.with_training(recompute="selective"), world_size=64)
    none = CostModel.from_profile(prof, llama.with_training(recompute="none"), world_size=64)
    lens = [8192, 4096]
    # recompute costs time: full > selective > none
    assert full.group_time(lens, 2) > sel.group_time(lens, 2) > none.group_time(lens, 2)
    # and saves memory
    assert full.group_memory(lens, 2) < sel.group_memory(lens, 2) < none.group_memory(lens, 2)
    # the distributed optimizer's state: 6 B/param + 12 B/param / 64
    assert full.static_memory() == pytest.approx(llama.num_params() * (6 + 12 / 64))
    # full recompute adds the layers' matmul forward: 2 x layer matmul params per token
    delta = full.group_time([4096], 1) - sel.group_time([4096], 1)
    assert delta == pytest.approx(4096 * memory.layer_matmul_flops_per_token(llama) / prof.linear.flops_per_s)
