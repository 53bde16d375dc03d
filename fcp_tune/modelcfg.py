"""The decoder model's shape and how it is trained: shared by the executor and the cost model.

A Llama-style decoder: RMSNorm, RoPE, GQA attention, SwiGLU MLP, untied embedding and
LM head. Presets cover a CI-sized model and real sizes for cluster-scale predictions.
:class:`Training` says how the model is trained (gradient dtype, optimizer-state sharding,
activation recompute, a static tensor-parallel degree); :mod:`fcp_tune.memory` turns both
into bytes per GPU. The real-size presets default to what such a model is trained with on
an 80 GB H100 (distributed optimizer, full recompute: see ``docs/PROFILES.md``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from fcp_tune.errors import FcpTuneError
from fcp_tune.fileio import check_document, read_yaml

SCHEMA = "fcp-tune/model"
SCHEMA_VERSION = 1
DTYPES = ("float32", "float64", "bfloat16", "float16")
DTYPE_BYTES = {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}
# none: every rank holds weights, gradients and optimizer state; optimizer: Megatron's
# distributed optimizer / ZeRO-1 (fp32 master weights and Adam moments sharded over all N
# ranks, which all hold weight replicas under FCP); fsdp: ZeRO-3 / FSDP (everything sharded).
SHARDINGS = ("none", "optimizer", "fsdp")
# none: keep every activation; selective: Megatron's --recompute-granularity selective with
# --recompute-modules core_attn layernorm; full: --recompute-granularity full --recompute-method
# uniform --recompute-num-layers 1 (each layer keeps only its input).
RECOMPUTES = ("none", "selective", "full")


@dataclass(frozen=True)
class Training:
    """How the model is trained, for memory and recompute time.

    Weights are in the model's ``dtype``; gradients accumulate in ``grad_dtype``; Adam keeps
    two fp32 moments, plus an fp32 master copy of the weights when ``master_weights`` and the
    weights are not already fp32 or wider. ``tensor_parallel`` GPUs form each context-parallel
    rank (static TP with sequence parallelism, as in the paper: TP and PP stay static).
    """

    grad_dtype: str = "float32"
    master_weights: bool = True
    sharding: str = "none"
    recompute: str = "none"
    tensor_parallel: int = 1

    def __post_init__(self) -> None:
        if self.grad_dtype not in DTYPES:
            raise FcpTuneError(f"model.training.grad_dtype must be one of {', '.join(DTYPES)}, got {self.grad_dtype!r}")
        if not isinstance(self.master_weights, bool):
            raise FcpTuneError(f"model.training.master_weights must be true or false, got {self.master_weights!r}")
        if self.sharding not in SHARDINGS:
            raise FcpTuneError(f"model.training.sharding must be one of {', '.join(SHARDINGS)}, got {self.sharding!r}")
        if self.recompute not in RECOMPUTES:
            raise FcpTuneError(f"model.training.recompute must be one of {', '.join(RECOMPUTES)}, got {self.recompute!r}")
        t = self.tensor_parallel
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise FcpTuneError(f"model.training.tensor_parallel must be a positive integer, got {t!r}")

    @classmethod
    def from_value(cls, data: Any, source: str) -> "Training":
        if isinstance(data, Training):
            return data
        if not isinstance(data, Mapping):
            raise FcpTuneError(f"{source}: model.training must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FcpTuneError(f"{source}: unknown model.training field(s): {', '.join(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the decoder. ``head_dim = hidden // heads``."""

    vocab_size: int = 512
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    ffn_hidden: int = 352
    rope_theta: float = 10000.0
    dtype: str = "float32"
    name: str = "custom"
    training: Training = field(default_factory=Training)

    def __post_init__(self) -> None:
        object.__setattr__(self, "training", Training.from_value(self.training, "<model>"))
        for f in ("vocab_size", "hidden", "layers", "heads", "kv_heads", "ffn_hidden"):
            value = getattr(self, f)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise FcpTuneError(f"model.{f} must be a positive integer, got {value!r}")
        if self.hidden % self.heads:
            raise FcpTuneError(f"model.hidden ({self.hidden}) must be divisible by model.heads ({self.heads})")
        if self.heads % self.kv_heads:
            raise FcpTuneError(f"model.heads ({self.heads}) must be a multiple of model.kv_heads ({self.kv_heads})")
        if (self.hidden // self.heads) % 2:
            raise FcpTuneError("model head_dim (hidden / heads) must be even for RoPE")
        if self.dtype not in DTYPES:
            raise FcpTuneError(f"model.dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not self.rope_theta > 0:
            raise FcpTuneError(f"model.rope_theta must be > 0, got {self.rope_theta!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def num_params(self) -> int:
        """Parameter count (embedding, layers, final norm, LM head)."""
        h, kvd = self.hidden, self.kv_heads * self.head_dim
        per_layer = h * h + 2 * h * kvd + h * h + 3 * h * self.ffn_hidden + 2 * h
        return self.vocab_size * h * 2 + self.layers * per_layer + h

    def linear_flops_per_token(self) -> float:
        """Forward+backward FLOPs per token of everything but attention scores (6 x matmul params)."""
        h, kvd = self.hidden, self.kv_heads * self.head_dim
        matmul = self.layers * (2 * h * h + 2 * h * kvd + 3 * h * self.ffn_hidden) + self.vocab_size * h
        return 6.0 * matmul

    def attention_flops(self, seqlen: int, causal: bool = True) -> float:
        """Forward+backward attention-score FLOPs of one sequence over all layers.

        FlashAttention convention: forward ``4 * L^2 * H * D``, halved for causal; backward 2.5x.
        """
        fwd = 4.0 * seqlen * seqlen * self.heads * self.head_dim * (0.5 if causal else 1.0)
        return 3.5 * fwd * self.layers

    def kv_bytes_per_token(self) -> int:
        """Bytes of K and V per token per layer (what context parallelism moves)."""
        return 2 * self.kv_heads * self.head_dim * self.dtype_bytes

    def to_dict(self) -> dict[str, Any]:
        """Plain fields; ``training`` only where :meth:`from_dict` would not infer it."""
        d = asdict(self)
        training = d.pop("training")
        if ModelConfig.from_dict(d) != self:
            d["training"] = training
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<model>") -> "ModelConfig":
        """Build from a mapping. Without ``training``, a shape equal to a preset's (same
        name) takes the preset's training setup (so a profile recorded before the field
        existed predicts what that model is trained with); any other shape the defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"schema", "schema_version"})
        if unknown:
            raise FcpTuneError(f"{source}: unknown model field(s): {', '.join(unknown)}")
        values = {k: v for k, v in data.items() if k in known}
        if "training" in values:
            values["training"] = Training.from_value(values["training"], source)
        model = cls(**values)
        preset = PRESETS.get(model.name)
        if "training" not in values and preset is not None and replace(preset, training=model.training) == model:
            model = preset
        return model

    def with_dtype(self, dtype: str) -> "ModelConfig":
        return replace(self, dtype=dtype)

    def with_training(self, **changes: Any) -> "ModelConfig":
        """A copy with some :class:`Training` fields changed (e.g. ``recompute="full"``)."""
        return replace(self, training=replace(self.training, **changes))


# What a 7-8B model is trained with on 80 GB H100s at long context (Megatron-LM's
# --use-distributed-optimizer and --recompute-granularity full; docs/PROFILES.md).
_H100_TRAINING = Training(sharding="optimizer", recompute="full")

PRESETS: dict[str, ModelConfig] = {
    # CI-sized: a step over a few thousand tokens takes well under a second per rank on CPU.
    "tiny": ModelConfig(vocab_size=512, hidden=128, layers=2, heads=4, kv_heads=2, ffn_hidden=352, name="tiny"),
    "small": ModelConfig(vocab_size=2048, hidden=256, layers=4, heads=8, kv_heads=2, ffn_hidden=704, name="small"),
    # Real shapes, for cluster-scale predictions only (never built on CPU).
    "llama3-8b": ModelConfig(
        vocab_size=128256, hidden=4096, layers=32, heads=32, kv_heads=8, ffn_hidden=14336,
        rope_theta=500000.0, dtype="bfloat16", name="llama3-8b", training=_H100_TRAINING,
    ),
    "llama2-7b": ModelConfig(
        vocab_size=32000, hidden=4096, layers=32, heads=32, kv_heads=32, ffn_hidden=11008,
        dtype="bfloat16", name="llama2-7b", training=_H100_TRAINING,
    ),
}


def load_model_config(spec: str) -> ModelConfig:
    """A preset name (``tiny``, ``small``, ``llama3-8b``, ``llama2-7b``) or a model YAML file."""
    if spec in PRESETS:
        return PRESETS[spec]
    data = read_yaml(spec)
    if isinstance(data, dict) and "schema" in data:
        check_document(data, SCHEMA, (SCHEMA_VERSION,), source=spec)
    if not isinstance(data, dict):
        raise FcpTuneError(f"{spec}: a model file must be a mapping of fields")
    return ModelConfig.from_dict(data, source=spec)
