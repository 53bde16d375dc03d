"""Hardware facts for a profile: GPUs through NVML when there is a driver, the CPU otherwise.

:func:`collect_hardware` never fails: NVML missing (no library, no driver, no
``pynvml``: nvidia-ml-py is the optional ``gpu`` extra, ``pip install "fcp-tune[gpu]"``)
is recorded as ``nvml: "unavailable: <reason>"`` next to the CPU model and core count; a single NVML query that a device does not support is recorded as ``null``.
The result is a plain dict of str/int/float/bool/None/list/dict (YAML and JSON safe).
"""

from __future__ import annotations

import os
import platform
import socket
from typing import Any, Callable


def _cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux) or the platform module."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_info() -> dict[str, Any]:
    """CPU model, logical cores, and the cores this process may run on."""
    return {"model": _cpu_model(), "logical_cores": os.cpu_count(), "usable_cores": usable_cores()}


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _query(fn: Callable[[], Any]) -> Any:
    """One NVML call; ``None`` when the device or driver does not support it."""
    try:
        return _text(fn())
    except Exception:  # noqa: BLE001 - any NVMLError (NotSupported, NoPermission, ...) means "unknown"
        return None


_TOPOLOGY_NAMES = {0: "internal", 10: "single_switch", 20: "multiple_switches", 30: "host_bridge", 40: "numa_node", 50: "system"}


def _gpu(nv: Any, index: int) -> dict[str, Any]:
    h = nv.nvmlDeviceGetHandleByIndex(index)
    mem = _query(lambda: nv.nvmlDeviceGetMemoryInfo(h))
    power = _query(lambda: nv.nvmlDeviceGetPowerManagementLimit(h))
    links = []
    for link in range(getattr(nv, "NVML_NVLINK_MAX_LINKS", 18)):
        state = _query(lambda: nv.nvmlDeviceGetNvLinkState(h, link))
        if state is None:
            break
        links.append(bool(state))
    return {
        "index": index,
        "name": _query(lambda: nv.nvmlDeviceGetName(h)),
        "uuid": _query(lambda: nv.nvmlDeviceGetUUID(h)),
        "memory_bytes": int(mem.total) if mem is not None else None,
        "max_sm_clock_mhz": _query(lambda: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM)),
        "max_mem_clock_mhz": _query(lambda: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_MEM)),
        "power_limit_w": power / 1000.0 if isinstance(power, (int, float)) else None,
        "pcie_gen": _query(lambda: nv.nvmlDeviceGetCurrPcieLinkGeneration(h)),
        "pcie_gen_max": _query(lambda: nv.nvmlDeviceGetMaxPcieLinkGeneration(h)),
        "pcie_width": _query(lambda: nv.nvmlDeviceGetCurrPcieLinkWidth(h)),
        "pcie_width_max": _query(lambda: nv.nvmlDeviceGetMaxPcieLinkWidth(h)),
        "nvlink_active": links,
    }


def nvml_info() -> dict[str, Any]:
    """GPUs, driver and pairwise topology through NVML, or ``{"nvml": "unavailable: ..."}``."""
    try:
        import pynvml as nv
    except ImportError as exc:
        # nvidia-ml-py is the optional ``gpu`` extra: a CPU install records no GPU facts.
        return {"nvml": f"unavailable: pynvml not importable ({exc}; pip install 'fcp-tune[gpu]')"}
    try:
        nv.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - LibraryNotFound, DriverNotLoaded, ...: no GPU facts
        return {"nvml": f"unavailable: {type(exc).__name__}: {exc}"}
    try:
        count = nv.nvmlDeviceGetCount()
        handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        topology: dict[str, str | None] = {}
        for i in range(count):
            for j in range(i + 1, count):
                level = _query(lambda: nv.nvmlDeviceGetTopologyCommonAncestor(handles[i], handles[j]))
                topology[f"{i}-{j}"] = _TOPOLOGY_NAMES.get(level, str(level)) if level is not None else None
        return {
            "nvml": "ok",
            "driver_version": _query(nv.nvmlSystemGetDriverVersion),
            "cuda_driver_version": _query(nv.nvmlSystemGetCudaDriverVersion),
            "gpu_count": count,
            "gpus": [_gpu(nv, i) for i in range(count)],
            "topology": topology,
        }
    except Exception as exc:  # noqa: BLE001 - a broken driver mid-query: report, never fail
        return {"nvml": f"unavailable: {type(exc).__name__}: {exc}"}
    finally:
        _query(nv.nvmlShutdown)


def software_info() -> dict[str, Any]:
    """Python, torch, CUDA, NCCL and gloo availability (torch imported lazily)."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        import torch
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency
        info["torch"] = None
        return info
    info["torch"] = str(torch.__version__)
    info["cuda"] = torch.version.cuda
    info["cuda_available"] = bool(torch.cuda.is_available())
    nccl = None
    if torch.version.cuda is not None:
        v = _query(torch.cuda.nccl.version)
        nccl = ".".join(map(str, v)) if isinstance(v, tuple) else v
    info["nccl"] = nccl
    info["gloo"] = "available" if dist.is_available() and dist.is_gloo_available() else "unavailable"
    return info


def collect_hardware() -> dict[str, Any]:
    """Everything above in one plain dict: hostname, CPU, NVML (GPUs) and software versions."""
    return {"hostname": socket.gethostname(), "cpu": cpu_info(), **nvml_info(), **software_info()}
