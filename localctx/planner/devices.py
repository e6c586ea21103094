"""Memory budgets of the devices a model could run on: CPU RAM, NVIDIA VRAM, Apple unified.

Sources: psutil for RAM; nvidia-ml-py (NVML) for VRAM when it is installed and a driver
answers; else ggml's own device list (free/total memory as the CUDA, Vulkan or other GPU
backend of this llama.cpp build reports it), so a CUDA build without the NVML extra still
plans for its GPU; on Apple Silicon, Metal's recommended working set (through ggml's device
list when the build has Metal, else 3/4 of RAM, what macOS grants by default on 16 GB+
machines). Nothing here loads a model or creates a CUDA context beyond what ggml's device
query does, so planning stays quick; the gauge reuses `NvidiaGpus` for its live readings.
Vulkan (and any other ggml GPU backend) is planned as a discrete GPU: layers offloaded, KV
q8_0 then q4_0, the CUDA margins.

Safety margins, because a plan that fills memory to the byte thrashes or fails at load:
- CPU: 10% of RAM (at least 512 MiB, at most 4 GiB) off what is available now.
- CUDA: 512 MiB for the CUDA context and cuBLAS workspace plus 5% of the card.
- Metal: 5% of the working set.
A --budget is the user's own number and is used as given.
"""

from __future__ import annotations

import platform
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from localctx.errors import BadInput

MIB = 1024 * 1024
GIB = 1024 * MIB
DEVICE_KINDS = ("cpu", "cuda", "metal", "vulkan", "gpu")
DISCRETE_GPUS = ("cuda", "vulkan", "gpu")  # planned with layers on the card, the rest on host


@dataclass(frozen=True)
class DeviceBudget:
    name: str  # "cpu", "cuda:0", "metal"
    kind: str  # one of DEVICE_KINDS
    total_bytes: int
    free_bytes: int
    usable_bytes: int  # what a plan may use: free minus the safety margin, or --budget
    unified: bool  # the GPU shares host RAM (Metal): host + GPU bytes count together
    source: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GpuMemory:
    index: int
    name: str
    used_bytes: int
    total_bytes: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def cpu_budget() -> DeviceBudget:
    vm = psutil.virtual_memory()
    margin = min(max(vm.total // 10, 512 * MIB), 4 * GIB)
    return DeviceBudget(
        "cpu", "cpu", vm.total, vm.available, max(vm.available - margin, 0), False, "psutil"
    )


class NvidiaGpus:
    """NVML, initialised once; `read()` is cheap (~tens of µs a GPU) and thread-safe."""

    _lock = threading.Lock()
    _shared: NvidiaGpus | None = None

    def __init__(self) -> None:
        self.reason = ""
        self._nvml: Any = None
        self._handles: list[Any] = []
        try:
            import pynvml
        except ImportError:
            self.reason = "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
            return
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except pynvml.NVMLError as exc:
            self.reason = f"NVML: {exc}"
            return
        self._nvml = pynvml
        if not self._handles:
            self.reason = "NVML found no devices"

    @classmethod
    def shared(cls) -> NvidiaGpus:
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    @property
    def available(self) -> bool:
        return bool(self._handles)

    def read(self) -> list[GpuMemory]:
        gpus = []
        for i, handle in enumerate(self._handles):
            try:
                mem = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                name = self._nvml.nvmlDeviceGetName(handle)
            except self._nvml.NVMLError:
                continue
            name = name.decode() if isinstance(name, bytes) else str(name)
            gpus.append(GpuMemory(i, name, int(mem.used), int(mem.total)))
        return gpus


def nvidia_budgets() -> tuple[list[DeviceBudget], str]:
    """One budget per NVIDIA GPU, or ([], why there is none)."""
    gpus = NvidiaGpus.shared()
    budgets = []
    for g in gpus.read():
        free = g.total_bytes - g.used_bytes
        margin = 512 * MIB + g.total_bytes // 20
        budgets.append(
            DeviceBudget(
                f"cuda:{g.index}", "cuda", g.total_bytes, free, max(free - margin, 0), False, "nvml"
            )
        )
    return budgets, "" if budgets else (gpus.reason or "NVML found no devices")


def is_apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def metal_budget() -> DeviceBudget | None:
    """Apple Silicon's GPU working set (unified memory); None elsewhere."""
    if not is_apple_silicon():
        return None
    total = free = 0
    source = "metal (ggml)"
    try:
        from localctx.engine.devices import backend_devices

        for dev in backend_devices():
            if dev.kind == "gpu" and "metal" in dev.name.lower():
                total, free = dev.total_bytes, dev.free_bytes
    except Exception:  # a build without Metal, or no llama.cpp: fall back to RAM
        total = 0
    if not total:
        total = psutil.virtual_memory().total * 3 // 4
        free = min(total, psutil.virtual_memory().available)
        source = "3/4 of RAM (macOS default working set)"
    return DeviceBudget("metal", "metal", total, free, max(free - total // 20, 0), True, source)


def gpu_kind(device_name: str) -> str:
    """The plan kind of a ggml device name: "CUDA0" -> cuda, "Vulkan1" -> vulkan, else gpu."""
    low = device_name.lower()
    return "cuda" if low.startswith("cuda") else "vulkan" if low.startswith("vulkan") else "gpu"


def ggml_gpu_budgets(reported: list[Any] | None = None) -> list[DeviceBudget]:
    """Discrete GPUs as ggml's backends report them (pure given `reported`, a list of
    engine.devices.BackendDevice; None reads this build's devices). Metal is not here: it
    is unified memory (metal_budget)."""
    if reported is None:
        try:
            from localctx.engine.devices import backend_devices

            reported = backend_devices()
        except Exception:  # no llama.cpp, or a build without a device registry
            return []
    budgets: list[DeviceBudget] = []
    for dev in reported:
        if dev.kind != "gpu" or "metal" in dev.name.lower() or not dev.total_bytes:
            continue
        kind = gpu_kind(dev.name)
        margin = 512 * MIB + dev.total_bytes // 20
        name = f"{kind}:{sum(b.kind == kind for b in budgets)}"
        budgets.append(
            DeviceBudget(name, kind, dev.total_bytes, dev.free_bytes,
                         max(dev.free_bytes - margin, 0), False, f"ggml ({dev.name})")
        )  # fmt: skip
    return budgets


def detect_devices(reported: list[Any] | None = None) -> tuple[list[DeviceBudget], dict[str, str]]:
    """Every device found (cpu first) and, per missing accelerator kind, the reason.
    `reported`: ggml's device list to use instead of this build's (tests)."""
    devices = [cpu_budget()]
    missing: dict[str, str] = {}
    cuda, why = nvidia_budgets() if reported is None else ([], "not read (given devices)")
    if not cuda:  # NVML absent or silent: what llama.cpp's own backends report
        ggml = ggml_gpu_budgets(reported)
        cuda = [d for d in ggml if d.kind == "cuda"]
        devices += [d for d in ggml if d.kind != "cuda"]
        for kind in ("vulkan", "gpu"):
            if not any(d.kind == kind for d in ggml):
                missing[kind] = f"no {kind} device in this llama.cpp build"
    devices += cuda
    if not cuda:
        missing["cuda"] = f"no NVIDIA GPU: {why}"
    metal = metal_budget()
    if metal:
        devices.append(metal)
    else:
        missing["metal"] = "no Apple Metal GPU: not an Apple Silicon Mac"
    return devices, missing


def choose_target(
    devices: list[DeviceBudget],
    missing: dict[str, str],
    kind: str = "auto",
    budget: int | None = None,
) -> tuple[list[DeviceBudget], DeviceBudget]:
    """The device a plan targets (auto: a GPU if any, else the CPU), with --budget applied.

    A --budget for an absent accelerator plans for a hypothetical one of that size ("will it
    fit on an 8 GiB card?"); without a budget an absent one is an error.
    """
    if kind not in ("auto", *DEVICE_KINDS):
        raise BadInput(f"unknown device '{kind}' (known: auto, {', '.join(DEVICE_KINDS)})")
    if kind == "auto":
        kind = next((d.kind for d in devices if d.kind != "cpu"), "cpu")
    found = [d for d in devices if d.kind == kind]
    if found:
        target = max(found, key=lambda d: d.usable_bytes)
    elif budget is None:
        raise BadInput(f"{missing.get(kind, f'no {kind} device')}; pass --budget to plan for one")
    else:
        target = DeviceBudget(kind, kind, budget, budget, budget, kind == "metal", "--budget")
        devices = [*devices, target]
    if budget is not None:
        target = DeviceBudget(
            target.name, kind, target.total_bytes, target.free_bytes, budget, target.unified,
            "--budget",
        )  # fmt: skip
        devices = [target if d.name == target.name else d for d in devices]
    return devices, target
