"""The plan: a table of KV type x context with bytes and fits per device, and the setting to
use. Pure: devices and the model shape come in, a Plan comes out.

Recommendation rules, in order (each step only with KV types the head dims can hold):
1. The target context at full placement (all layers on a GPU, or all on the CPU), trying
   - CPU: f16, then q8_0, then q4_0: quantized KV prefills 3-5x slower on CPU (flash attention
     dequantizes; 197 vs 70 vs 42 tok/s measured here), so memory is spent before speed;
   - CUDA/Metal: q8_0, then q4_0: q8_0 costs 0.53x f16 at no measurable loss (perplexity 16.97
     vs 16.98 with a 512-token sink window) and the GPU has fast kernels for matching pairs.
2. CUDA only: partial offload — the most layers whose share fits the card, rest in RAM.
3. A sink window: the cheapest type (q4_0 unless --kv names one) and the largest window, in
   256-cell steps, that fits; n_ctx is sized to the window (the policy never needs more).
4. Nothing fits (the weights alone do not): the plan says so and why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from localctx.engine.cachetypes import cache_type
from localctx.errors import BadInput, BadKvSetting
from localctx.planner.budget import format_bytes
from localctx.planner.devices import DISCRETE_GPUS, DeviceBudget
from localctx.planner.footprint import Footprint, all_layers, footprint
from localctx.planner.kvmath import CELL_PAD, DEFAULT_UBATCH, holds, kv_sizing
from localctx.planner.shape import ModelShape

KV_TYPES = ("f16", "q8_0", "q4_0")
DEFAULT_CONTEXTS = (8192, 32768, 131072)
MIN_WINDOW = 512  # below this a sink window evicts nearly every turn


@dataclass(frozen=True)
class PlanRow:
    kv: str
    ctx: int
    kv_bytes: int
    kv_bytes_per_token: int
    weights_bytes: int
    compute_bytes: int
    output_bytes: int
    runtime_bytes: int
    total_bytes: int
    fits: dict[str, bool]
    device_bytes: dict[str, int]  # per placement of the target: {"host": …, "gpu": …}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Recommendation:
    device: str
    type_k: str
    type_v: str
    n_ctx: int
    window: int | None  # a sink window when the target context does not fit
    n_gpu_layers: int
    fits: bool
    total_bytes: int
    reason: str
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data


@dataclass(frozen=True)
class Plan:
    model: str
    model_path: str
    ctx: int
    target: DeviceBudget
    devices: tuple[DeviceBudget, ...]
    recommendation: Recommendation
    rows: tuple[PlanRow, ...]
    missing: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_path": self.model_path,
            "ctx": self.ctx,
            "recommendation": self.recommendation.to_json(),
            "rows": [r.to_json() for r in self.rows],
            "device": self.target.name,
            "devices": [d.to_json() for d in self.devices],
            "missing_devices": dict(self.missing),
        }


def placement_layers(shape: ModelShape, device: DeviceBudget) -> int:
    """Full placement on a device: every layer on the GPU, or none for the CPU."""
    return 0 if device.kind == "cpu" else all_layers(shape)


def fits_on(fp: Footprint, device: DeviceBudget, cpu: DeviceBudget) -> bool:
    """CPU and unified memory hold everything; a discrete GPU its share, the host the rest."""
    if device.kind == "cpu" or device.unified:
        return fp.total_bytes <= device.usable_bytes
    return fp.gpu_bytes <= device.usable_bytes and fp.host_bytes <= cpu.usable_bytes


def preferred_types(shape: ModelShape, device: DeviceBudget, kv: str = "auto") -> list[str]:
    if kv != "auto":
        if not holds(shape, kv):
            dims = sorted({d for d in (*shape.key_lengths, *shape.value_lengths) if d})
            raise BadKvSetting(
                f"KV type {kv} cannot hold this model's head dims {dims}: its block size "
                f"{cache_type(kv).block_size} must divide them"
            )
        return [kv]
    order = ("f16", "q8_0", "q4_0") if device.kind == "cpu" else ("q8_0", "q4_0")
    types = [t for t in order if holds(shape, t)]
    return types or ["f16"]


def make_plan(
    shape: ModelShape,
    ctx: int,
    devices: list[DeviceBudget],
    target: DeviceBudget,
    *,
    kv: str = "auto",
    contexts: tuple[int, ...] | None = None,
    n_ubatch: int = DEFAULT_UBATCH,
    swa_full: bool = False,
    missing: dict[str, str] | None = None,
) -> Plan:
    if ctx <= 0:
        raise BadInput(f"context size must be positive, got {ctx}")
    cpu = next(d for d in devices if d.kind == "cpu")
    rows = []
    for n in contexts if contexts is not None else (ctx,):
        for t in KV_TYPES:
            if not holds(shape, t):
                continue
            sizing = kv_sizing(shape, t, t, n, n_ubatch=n_ubatch, swa_full=swa_full)
            fp = footprint(shape, sizing, placement_layers(shape, target), n_ubatch=n_ubatch)
            fits = {
                d.name: fits_on(
                    footprint(shape, sizing, placement_layers(shape, d), n_ubatch=n_ubatch),
                    d,
                    cpu,
                )
                for d in devices
            }
            rows.append(
                PlanRow(
                    kv=t,
                    ctx=n,
                    kv_bytes=sizing.total_bytes,
                    kv_bytes_per_token=sizing.bytes_per_token,
                    weights_bytes=fp.weights_bytes,
                    compute_bytes=fp.compute_bytes,
                    output_bytes=fp.output_bytes,
                    runtime_bytes=fp.runtime_bytes,
                    total_bytes=fp.total_bytes,
                    fits=fits,
                    device_bytes={"host": fp.host_bytes, "gpu": fp.gpu_bytes},
                )
            )
    rec = recommend(shape, ctx, target, cpu, kv=kv, n_ubatch=n_ubatch, swa_full=swa_full)
    return Plan(
        shape.name, shape.path, ctx, target, tuple(devices), rec, tuple(rows), dict(missing or {})
    )


def recommend(
    shape: ModelShape,
    ctx: int,
    target: DeviceBudget,
    cpu: DeviceBudget,
    *,
    kv: str = "auto",
    n_ubatch: int = DEFAULT_UBATCH,
    swa_full: bool = False,
) -> Recommendation:
    types = preferred_types(shape, target, kv)
    notes = []
    if not shape.weights_bytes:
        notes.append("the file lists no tensors (metadata only): weights are not counted")
    if shape.trained_ctx and ctx > shape.trained_ctx:
        notes.append(
            f"{ctx} is above the trained context {shape.trained_ctx}: needs --force "
            "(RoPE scaling; quality drops)"
        )

    def fp_for(t: str, n: int, layers: int) -> Footprint:
        sizing = kv_sizing(shape, t, t, n, n_ubatch=n_ubatch, swa_full=swa_full)
        return footprint(shape, sizing, layers, n_ubatch=n_ubatch)

    def rec(
        t: str, n: int, window: int | None, layers: int, fits: bool, why: str
    ) -> Recommendation:
        total = fp_for(t, n, layers).total_bytes
        return Recommendation(target.name, t, t, n, window, layers, fits, total, why, tuple(notes))

    full = placement_layers(shape, target)
    budget = format_bytes(target.usable_bytes)
    for t in types:
        if fits_on(fp_for(t, ctx, full), target, cpu):
            why = f"{t} KV holds the full {ctx}-token context within {budget} on {target.name}"
            if target.kind == "cpu" and t != "f16":
                why += " (f16 does not fit; quantized KV prefills 3-5x slower on CPU)"
            return rec(t, ctx, None, full, True, why)
    if target.kind in DISCRETE_GPUS:
        vram = target.usable_bytes
        for t in types:

            def fits_gpu(k: int, t: str = t) -> bool:
                return fp_for(t, ctx, k).gpu_bytes <= vram

            layers = _most_layers(fits_gpu, full)
            if layers and fits_on(fp_for(t, ctx, layers), target, cpu):
                why = f"{t} KV at {ctx} tokens with {layers} of {full} layers on {target.name}"
                return rec(t, ctx, None, layers, True, why + "; the rest run on the CPU")
    t = types[-1]
    window = _largest_window(lambda n: fits_on(fp_for(t, n, full), target, cpu), ctx)
    if window:
        why = (
            f"even {t} KV does not fit {ctx} tokens in {budget} on {target.name}: "
            f"a sink window of {window} tokens does"
        )
        return rec(t, window, window, full, True, why)
    need = format_bytes(fp_for(t, MIN_WINDOW, full).total_bytes)
    why = f"nothing fits: the weights and a {MIN_WINDOW}-token window need {need}, over {budget}"
    return rec(t, min(ctx, MIN_WINDOW), min(ctx, MIN_WINDOW), full, False, why)


def _most_layers(fits: Callable[[int], bool], full: int) -> int:
    """Largest k in [0, full) whose GPU share fits: monotonic, more layers take more VRAM."""
    lo, hi = 0, full - 1
    if hi < 1 or not fits(1):
        return 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _largest_window(fits: Callable[[int], bool], ctx: int) -> int:
    """Largest n (a multiple of CELL_PAD, MIN_WINDOW <= n < ctx) with fits(n); 0 if none."""
    lo, hi = MIN_WINDOW // CELL_PAD, (ctx - 1) // CELL_PAD
    if hi < lo or not fits(lo * CELL_PAD):
        return 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid * CELL_PAD):
            lo = mid
        else:
            hi = mid - 1
    return lo * CELL_PAD
