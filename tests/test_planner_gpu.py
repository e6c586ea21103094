"""Planning for GPUs from synthetic device reports: CUDA without NVML (ggml's own device
list), Vulkan and other ggml GPU backends as discrete GPUs, and a GPU build that finds no
GPU budget planning for the CPU instead of refusing to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from localctx.engine.devices import BackendDevice
from localctx.engine.native_log import flash_attn_enabled, layers_offloaded
from localctx.planner.devices import (
    DeviceBudget,
    choose_target,
    detect_devices,
    ggml_gpu_budgets,
    gpu_kind,
)
from localctx.planner.plan import recommend
from localctx.planner.shape import load_shape
from tests.test_planner import LLAMA31_8B, build_gguf

GIB = 2**30


def dev(name: str, total_gib: float, free_gib: float, kind: str = "gpu") -> BackendDevice:
    return BackendDevice(name, f"{name} test", kind, int(free_gib * GIB), int(total_gib * GIB))


@pytest.fixture
def llama8b(tmp_path: Path):
    return load_shape(build_gguf(tmp_path / "llama8b.gguf", LLAMA31_8B))


def test_device_names_map_to_plan_kinds() -> None:
    assert [gpu_kind(n) for n in ("CUDA0", "Vulkan1", "SYCL0", "ROCm0")] == [
        "cuda", "vulkan", "gpu", "gpu"
    ]  # fmt: skip


def test_ggml_reports_become_budgets_with_the_cuda_margins() -> None:
    budgets = ggml_gpu_budgets(
        [
            dev("CPU", 64, 60, kind="cpu"),
            dev("CUDA0", 8, 7.5),
            dev("Vulkan0", 12, 11),
            dev("Metal", 16, 16),
        ]
    )
    assert [(b.name, b.kind) for b in budgets] == [("cuda:0", "cuda"), ("vulkan:0", "vulkan")]
    cuda = budgets[0]
    assert cuda.usable_bytes == int(7.5 * GIB) - (512 * 2**20 + 8 * GIB // 20)
    assert not cuda.unified and cuda.source == "ggml (CUDA0)"


def test_a_cuda_build_without_nvml_still_plans_its_gpu() -> None:
    devices, missing = detect_devices(reported=[dev("CUDA0", 24, 23)])
    assert any(d.kind == "cuda" for d in devices) and "cuda" not in missing
    _, target = choose_target(devices, missing, "auto")
    assert target.kind == "cuda"


def test_vulkan_is_planned_as_a_gpu_with_layers_offloaded(llama8b) -> None:
    devices, missing = detect_devices(reported=[dev("Vulkan0", 24, 24)])
    devices, target = choose_target(devices, missing, "vulkan")
    cpu = DeviceBudget("cpu", "cpu", 64 * GIB, 64 * GIB, 64 * GIB, False, "test")
    rec = recommend(llama8b, 131072, target, cpu)
    assert target.kind == "vulkan" and rec.type_k == "q8_0" and rec.n_gpu_layers == 33
    small = DeviceBudget("vulkan:0", "vulkan", 8 * GIB, 8 * GIB, 8 * GIB, False, "test")
    partial = recommend(llama8b, 131072, small, cpu)
    assert 0 < partial.n_gpu_layers < 33 and partial.window is None  # partial offload


def test_no_gpu_reported_names_each_missing_kind() -> None:
    devices, missing = detect_devices(reported=[])
    assert [d.kind for d in devices] == ["cpu"]
    assert {"cuda", "vulkan", "gpu"} <= set(missing)
    with pytest.raises(Exception, match="pass --budget"):
        choose_target(devices, missing, "cuda")


def test_a_gpu_build_with_no_gpu_budget_plans_for_the_cpu(
    smollm_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import localctx.planner as planner
    import localctx.runconfig as runconfig

    monkeypatch.setattr(runconfig, "_usable_device", lambda: "cuda")
    monkeypatch.setattr(planner, "detect_devices", lambda: detect_devices(reported=[]))
    config = runconfig.run_config(model=str(smollm_path))
    assert config.settings.n_gpu_layers == 0
    assert "cuda build" in config.reason and "--gpu-layers" in config.reason


def test_what_llama_cpp_placed_and_chose_is_read_from_its_log() -> None:
    assert layers_offloaded(["load_tensors: offloaded 25/25 layers to GPU"]) == (25, 25)
    assert layers_offloaded(["llama_kv_cache: size = 11 MiB"]) is None
    assert flash_attn_enabled(["resolve_fused_ops: Flash Attention enabled"], default=False)
    assert not flash_attn_enabled(["x"], default=False)
