"""What the llama.cpp build can run on: compiled backends, their devices and memory.

llama-cpp-python has no bindings for ggml's device registry, so this declares the few C
functions it needs (ggml-backend.h) on the libggml it already loaded. Read-only queries: no
model, no context, safe to call from any thread. llama_cpp is imported on first use so that
`import localctx.engine.devices` stays free for the planner and the gauge.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import asdict, dataclass
from typing import Any

# enum ggml_backend_dev_type in ggml-backend.h
_DEV_KINDS = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}
_lib: Any = None
_lock = threading.Lock()


@dataclass(frozen=True)
class BackendDevice:
    name: str  # "CPU", "CUDA0", "Metal", "Vulkan0"
    description: str
    kind: str  # cpu | gpu | igpu | accel
    free_bytes: int
    total_bytes: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _ggml() -> Any:
    global _lib
    with _lock:
        if _lib is None:
            from llama_cpp._ggml import libggml as lib

            lib.ggml_backend_reg_count.restype = ctypes.c_size_t
            lib.ggml_backend_reg_get.restype = ctypes.c_void_p
            lib.ggml_backend_reg_get.argtypes = [ctypes.c_size_t]
            lib.ggml_backend_reg_name.restype = ctypes.c_char_p
            lib.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
            lib.ggml_backend_dev_count.restype = ctypes.c_size_t
            lib.ggml_backend_dev_get.restype = ctypes.c_void_p
            lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
            for fn in (lib.ggml_backend_dev_name, lib.ggml_backend_dev_description):
                fn.restype = ctypes.c_char_p
                fn.argtypes = [ctypes.c_void_p]
            lib.ggml_backend_dev_type.restype = ctypes.c_int
            lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
            lib.ggml_backend_dev_memory.restype = None
            lib.ggml_backend_dev_memory.argtypes = [
                ctypes.c_void_p,
                ctypes.POINTER(ctypes.c_size_t),
                ctypes.POINTER(ctypes.c_size_t),
            ]
            _lib = lib
        return _lib


def compiled_backends() -> list[str]:
    """Backend registries in this build, e.g. ["CPU"] or ["CUDA", "CPU"]."""
    lib = _ggml()
    return [
        lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)).decode()
        for i in range(lib.ggml_backend_reg_count())
    ]


def backend_devices() -> list[BackendDevice]:
    """Every device ggml can use, with the memory it reports (Metal: the working set)."""
    lib = _ggml()
    devices = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        devices.append(
            BackendDevice(
                name=(lib.ggml_backend_dev_name(dev) or b"").decode(errors="replace"),
                description=(lib.ggml_backend_dev_description(dev) or b"").decode(errors="replace"),
                kind=_DEV_KINDS.get(lib.ggml_backend_dev_type(dev), "unknown"),
                free_bytes=int(free.value),
                total_bytes=int(total.value),
            )
        )
    return devices


def gpu_offload_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def backend_name() -> str:
    """The accelerator backend compiled in and usable: cuda, metal, vulkan — or cpu."""
    names = " ".join(compiled_backends()).upper()
    if gpu_offload_supported():
        for name in ("cuda", "metal", "vulkan"):
            if name.upper() in names:
                return name
    return "cpu"
