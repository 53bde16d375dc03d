"""Model FLOPs utilisation and what a device holds: the figures a cluster engineer checks first.

Model FLOPs follow the PaLM convention (Chowdhery et al., arXiv 2204.02311, appendix B):
``6 P`` per token for the weights used in matmuls (here the layers and the LM head, the
embedding lookup does no matmul), plus attention ``12 layers h s`` per token of a sequence
of length ``s``, halved for causal masks. For a packed batch attention is counted per
sequence: ``6 layers h sum(s_i^2)``, never ``(sum s_i)^2``. Recompute is not model work (MFU,
not HFU). MFU divides the model FLOPs per second per GPU by the device's dense bf16 peak.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from fcp_tune.modelcfg import ModelConfig

# Dense bf16 peak TFLOP/s by GPU name (datasheets; no sparsity).
PEAK_TFLOPS = {
    "H100 SXM": 989.4,  # NVIDIA H100 Tensor Core GPU datasheet, SXM5, BF16 dense
    "H200": 989.4,  # NVIDIA H200 datasheet, BF16 dense
    "A100": 312.0,  # NVIDIA A100 datasheet, BF16 dense
}


def model_flops(model: ModelConfig, seqlens: Sequence[int], causal: bool = True) -> float:
    """Forward+backward model FLOPs of one batch of sequences (module docstring)."""
    tokens = float(sum(int(s) for s in seqlens))
    squares = float(sum(int(s) * int(s) for s in seqlens))
    attention = 12.0 * model.layers * model.hidden * squares * (0.5 if causal else 1.0)
    return model.linear_flops_per_token() * tokens + attention


def peak_flops(hardware: Mapping[str, Any]) -> float | None:
    """The device's dense bf16 peak FLOP/s: ``hardware.peak_tflops`` if recorded, else by GPU
    name (:data:`PEAK_TFLOPS`), else ``None`` (no MFU, TFLOP/s only)."""
    if hardware.get("peak_tflops"):
        return float(hardware["peak_tflops"]) * 1e12
    name = str(hardware.get("gpu") or "")
    for key, tflops in PEAK_TFLOPS.items():
        if key.replace(" ", "").lower() in name.replace(" ", "").lower():
            return tflops * 1e12
    return None


def device_memory_bytes(hardware: Mapping[str, Any]) -> float | None:
    """The device's memory from the profile's ``hardware`` (``gpu_memory_bytes``, or the first
    NVML GPU's ``memory_bytes``); ``None`` when the profile does not say (a CPU profile)."""
    if hardware.get("gpu_memory_bytes"):
        return float(hardware["gpu_memory_bytes"])
    gpus = hardware.get("gpus")
    if gpus and isinstance(gpus, list) and isinstance(gpus[0], Mapping) and gpus[0].get("memory_bytes"):
        return float(gpus[0]["memory_bytes"])
    return None


def gpus(model: ModelConfig, ranks: int) -> int:
    """GPUs of ``ranks`` context-parallel ranks (each a tensor-parallel group)."""
    return ranks * model.training.tensor_parallel


def utilisation(model: ModelConfig, flops: float, step_s: float, ranks: int,
                hardware: Mapping[str, Any]) -> tuple[float, float | None]:
    """(TFLOP/s per GPU, MFU or ``None``) of ``flops`` model FLOPs done in ``step_s`` by ``ranks`` ranks."""
    per_gpu = flops / step_s / gpus(model, ranks) if step_s > 0 else 0.0
    peak = peak_flops(hardware)
    return per_gpu / 1e12, (per_gpu / peak if peak else None)
