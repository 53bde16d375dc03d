"""Hardware facts: never fail without NVML, report GPUs and topology when NVML answers."""

from __future__ import annotations

import json
import sys
import types

import pynvml
import pytest
import yaml

from fcp_tune import hardware


def test_collect_hardware_is_plain_data():
    info = hardware.collect_hardware()
    assert info["hostname"]
    assert info["cpu"]["logical_cores"] >= 1
    assert info["python"].count(".") == 2
    assert isinstance(info["torch"], str) and type(info["torch"]) is str
    assert info["gloo"] in ("available", "unavailable")
    assert "nvml" in info
    # Round-trips through YAML and JSON unchanged.
    assert yaml.safe_load(yaml.safe_dump(info)) == info
    assert json.loads(json.dumps(info)) == info


@pytest.mark.parametrize(
    "error", [pynvml.NVMLError_LibraryNotFound, pynvml.NVMLError_DriverNotLoaded], ids=["no-library", "no-driver"]
)
def test_nvml_missing_is_recorded_not_raised(monkeypatch, error):
    def boom():
        raise error(getattr(pynvml, "NVML_ERROR_LIBRARY_NOT_FOUND", 12))

    monkeypatch.setattr(pynvml, "nvmlInit", boom)
    info = hardware.collect_hardware()
    assert info["nvml"].startswith("unavailable: ")
    assert error.__name__ in info["nvml"]
    assert info["cpu"]["model"]
    assert "gpus" not in info


def test_pynvml_not_importable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    info = hardware.nvml_info()
    assert info["nvml"].startswith("unavailable: pynvml not importable")


class _NotSupported(Exception):
    pass


def _fake_nvml(count: int = 2) -> types.SimpleNamespace:
    def unsupported(*_):
        raise _NotSupported("not supported")

    mem = types.SimpleNamespace(total=80 * 2**30)
    return types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: count,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda h: b"NVIDIA H100 80GB HBM3",
        nvmlDeviceGetUUID=lambda h: f"GPU-{h}",
        nvmlDeviceGetMemoryInfo=lambda h: mem,
        nvmlDeviceGetMaxClockInfo=lambda h, kind: 1980 if kind == 0 else 2619,
        NVML_CLOCK_SM=0, NVML_CLOCK_MEM=1, NVML_NVLINK_MAX_LINKS=18,
        nvmlDeviceGetPowerManagementLimit=lambda h: 700000,
        nvmlDeviceGetCurrPcieLinkGeneration=lambda h: 5, nvmlDeviceGetMaxPcieLinkGeneration=lambda h: 5,
        nvmlDeviceGetCurrPcieLinkWidth=lambda h: 16, nvmlDeviceGetMaxPcieLinkWidth=lambda h: 16,
        nvmlDeviceGetNvLinkState=lambda h, link: 1 if link < 3 else unsupported(),
        nvmlDeviceGetTopologyCommonAncestor=lambda a, b: 10,
        nvmlSystemGetDriverVersion=lambda: "560.35.03",
        nvmlSystemGetCudaDriverVersion=unsupported,
    )


def test_gpus_and_topology_from_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(2))
    info = hardware.nvml_info()
    assert info["nvml"] == "ok"
    assert info["driver_version"] == "560.35.03"
    assert info["cuda_driver_version"] is None  # unsupported query: unknown, not an error
    assert info["gpu_count"] == 2
    gpu = info["gpus"][1]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["memory_bytes"] == 80 * 2**30
    assert gpu["max_sm_clock_mhz"] == 1980
    assert gpu["power_limit_w"] == 700.0
    assert (gpu["pcie_gen"], gpu["pcie_width"]) == (5, 16)
    assert gpu["nvlink_active"] == [True, True, True]
    assert info["topology"] == {"0-1": "single_switch"}
