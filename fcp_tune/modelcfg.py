"""The decoder model's shape: shared by the executor (which builds it) and the cost model.

A Llama-style decoder: RMSNorm, RoPE, GQA attention, SwiGLU MLP, untied embedding and
LM head. Presets cover a CI-sized model and real sizes for cluster-scale predictions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from fcp_tune.errors import FcpTuneError
from fcp_tune.fileio import check_document, read_yaml

SCHEMA = "fcp-tune/model"
SCHEMA_VERSION = 1
DTYPES = ("float32", "float64", "bfloat16", "float16")


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

    def __post_init__(self) -> None:
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
        return {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}[self.dtype]

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
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<model>") -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"schema", "schema_version"})
        if unknown:
            raise FcpTuneError(f"{source}: unknown model field(s): {', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_dtype(self, dtype: str) -> "ModelConfig":
        return replace(self, dtype=dtype)


PRESETS: dict[str, ModelConfig] = {
    # CI-sized: a step over a few thousand tokens takes well under a second per rank on CPU.
    "tiny": ModelConfig(vocab_size=512, hidden=128, layers=2, heads=4, kv_heads=2, ffn_hidden=352, name="tiny"),
    "small": ModelConfig(vocab_size=2048, hidden=256, layers=4, heads=8, kv_heads=2, ffn_hidden=704, name="small"),
    # Real shapes, for cluster-scale predictions only (never built on CPU).
    "llama3-8b": ModelConfig(
        vocab_size=128256, hidden=4096, layers=32, heads=32, kv_heads=8, ffn_hidden=14336,
        rope_theta=500000.0, dtype="bfloat16", name="llama3-8b",
    ),
    "llama2-7b": ModelConfig(
        vocab_size=32000, hidden=4096, layers=32, heads=32, kv_heads=32, ffn_hidden=11008,
        dtype="bfloat16", name="llama2-7b",
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
