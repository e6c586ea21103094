"""GGUF-metadata byte math, device budgets and recommendations. Never loads weights.

`plan_model(path, ctx)` is the one entry point the CLI and runconfig use: shape (GGUF header)
-> KV sizing per layer (kvmath) -> placement on devices (footprint) -> rows and a
recommendation (plan). Device budgets come from psutil/NVML (devices); llama.cpp is never
imported here except, on Apple Silicon, to read Metal's working set through the engine.
"""

from __future__ import annotations

from pathlib import Path

from localctx.errors import BadInput
from localctx.planner.devices import choose_target, detect_devices
from localctx.planner.plan import DEFAULT_CONTEXTS, Plan, make_plan
from localctx.planner.shape import load_shape

__all__ = ["DEFAULT_CONTEXTS", "Plan", "plan_model"]


def plan_model(
    path: str | Path,
    ctx: int = 131072,
    *,
    kv: str = "auto",
    device: str = "auto",
    budget: int | None = None,
    contexts: tuple[int, ...] | None = None,
) -> Plan:
    """Plan a model file for a context on this machine's devices (or a --budget)."""
    if ctx <= 0:
        raise BadInput(f"context size must be positive, got {ctx}")
    shape = load_shape(path)
    devices, missing = detect_devices()
    devices, target = choose_target(devices, missing, device, budget)
    missing = {kind: why for kind, why in missing.items() if kind != target.kind}
    return make_plan(shape, ctx, devices, target, kv=kv, contexts=contexts, missing=missing)
