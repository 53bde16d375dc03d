"""What a run's results mean on the device: model TFLOP/s per GPU, MFU, predicted peak memory.

``fcp-tune run`` shows these beside tokens/s: model FLOPs of the measured steps' batches
(:func:`fcp_tune.mfu.model_flops`, attention per sequence) over the plans' critical path of
busy time (the measure ``run`` compares by; wall time on shared cores measures the neighbours); MFU where
the device's peak is known (the ``--profile``'s hardware); and, with a profile that knows
its device's memory, each policy's predicted peak from its executed plans, flagged when it
exceeds the device (:func:`fcp_tune.memory.over_device`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

from fcp_tune import mfu
from fcp_tune.executor.runner import RunReport
from fcp_tune.memory import GIB, over_device
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.planner.plan import Plan


@dataclass(frozen=True)
class RunFigures:
    tflops_per_gpu: float
    mfu: Optional[float]
    predicted_peak_gib: Optional[float] = None
    device_gib: Optional[float] = None
    over_device: Optional[str] = None  # one line naming the rank, predicted and device GiB

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_figures(report: RunReport, model: ModelConfig, cost: Any = None) -> dict[str, RunFigures]:
    """Per policy name: :class:`RunFigures`. ``cost``: the run's :class:`~fcp_tune.costmodel.CostModel`
    (its profile's hardware gives the peak and the memory), or None."""
    hardware = cost.profile.hardware if cost is not None and hasattr(cost, "profile") else {}
    device = mfu.device_memory_bytes(hardware)
    out = {}
    for r in report.results:
        measured = [s for s in r.measured if s.seqlens]
        flops = sum(mfu.model_flops(model, s.seqlens) for s in measured)
        wall = sum(s.critical_path_s for s in measured)
        tflops, util = mfu.utilisation(model, flops, wall, report.world_size, hardware) if wall else (0.0, None)
        peak_gib = why = None
        if device is not None and hasattr(cost, "predict"):
            peaks = [0.0] * report.world_size
            for s in measured:
                if s.plan:
                    pred = cost.predict(Plan.from_dict(s.plan), s.seqlens)
                    peaks = [max(a, b) for a, b in zip(peaks, pred.peak_memory_bytes)]
            peak_gib = max(peaks) / GIB
            why = over_device(peaks, device)
        out[r.name] = RunFigures(tflops, util, peak_gib, None if device is None else device / GIB, why)
    return out
