"""EngineSettings for benchmarks: on a build that can offload, every layer goes to the GPU.

The product's own path plans offload with the planner (runconfig); the benchmarks build their
settings directly, and with the dataclass default (0 layers) a CUDA build would measure the
CPU. This is the one place that decides it for them.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from localctx.engine import EngineSettings


@cache
def _offload() -> int:
    from localctx.engine.devices import gpu_offload_supported

    return -1 if gpu_offload_supported() else 0


def bench_settings(*args: Any, **fields: Any) -> EngineSettings:
    """EngineSettings(...) with n_gpu_layers -1 on a GPU build unless given."""
    fields.setdefault("n_gpu_layers", _offload())
    return EngineSettings(*args, **fields)
