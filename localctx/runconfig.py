"""Turn command-line choices into EngineSettings, once, before anything loads.

By default the planner decides (localctx.planner): the model's trained context (at most
131,072 tokens), the KV type that holds it on this machine's device (CPU: f16 while it fits,
since quantized KV prefills 3-5x slower there; GPU: q8_0, then q4_0), the layers to offload,
and a sink window sized to fit when even q4_0 does not. --kv, --ctx, --window and
--gpu-layers override each choice; the planner fills in the rest around them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from localctx.engine.base import EngineSettings
from localctx.engine.cachetypes import cache_type
from localctx.engine.rpc import parse_endpoints
from localctx.errors import BadInput, BadModelFile
from localctx.models.catalogue import resolve_model
from localctx.models.ggufmeta import read_gguf

DEFAULT_CTX = 8192  # when the GGUF does not say its trained context
MAX_THREADS = 512  # GGML_MAX_N_THREADS: llama.cpp writes past its arrays above it (a segfault)
MAX_DEFAULT_CTX = 131072
EMBEDDING_ARCHITECTURES = frozenset({"bert", "nomic-bert", "jina-bert-v2", "modern-bert"})


@dataclass(frozen=True)
class RunConfig:
    """What to load, and the sink window to run it with (None: the whole context)."""

    settings: EngineSettings
    window: int | None
    reason: str  # why these settings: the planner's reason, or "as given"


def run_config(
    model: str | None = None,
    kv: str | None = None,
    n_ctx: int | None = None,
    window: int | None = None,
    force: bool = False,
    threads: int | None = None,
    gpu_layers: int | None = None,
    rpc: str | None = None,
) -> RunConfig:
    check_threads(threads)
    if gpu_layers is not None and gpu_layers < -1:
        raise BadInput(f"--gpu-layers must be -1 (all) or more, got {gpu_layers}")
    path = resolve_model(model)
    meta = read_gguf(path)
    if meta.architecture in EMBEDDING_ARCHITECTURES:
        raise BadModelFile(
            f"{path.name} is an embedding model ({meta.architecture}): it serves code search,"
            " not chat; pick a chat model (localctx models list)"
        )
    # RPC servers are offload devices: with --rpc and no --gpu-layers, every layer goes to them.
    rpc_servers = ",".join(str(e) for e in parse_endpoints(rpc)) if rpc is not None else None
    if rpc_servers and gpu_layers is None:
        gpu_layers = -1
    if n_ctx is not None and n_ctx <= 0:
        raise BadInput(f"context size must be positive, got {n_ctx}")
    if window is not None and window <= 0:
        raise BadInput(f"window must be positive, got {window}")
    kv_type = cache_type(kv).name if kv is not None else None  # "" is refused, not "auto"
    if kv_type and n_ctx is not None and gpu_layers is not None:
        chosen_ctx, chosen_layers, reason = n_ctx, gpu_layers, "as given"
    else:
        from localctx.planner import plan_model

        trained = meta.context_length
        target = n_ctx or window or min(trained or DEFAULT_CTX, MAX_DEFAULT_CTX)
        device = _usable_device()
        try:
            rec = plan_model(
                path, target, kv=kv_type or "auto", device=device, contexts=()
            ).recommendation
        except BadInput as exc:
            if device == "cpu":
                raise
            # A GPU build whose GPU reports no memory (no NVML, no ggml device): plan for the
            # CPU rather than refuse to start; --gpu-layers still offloads.
            rec = plan_model(
                path, target, kv=kv_type or "auto", device="cpu", contexts=()
            ).recommendation
            rec = replace(rec, reason=f"{rec.reason} ({device} build, but {exc}: planned for"
                          " the CPU; pass --gpu-layers N to offload)")  # fmt: skip
        kv_type = kv_type or rec.type_k
        chosen_ctx = n_ctx if n_ctx is not None else rec.n_ctx
        chosen_layers = gpu_layers if gpu_layers is not None else rec.n_gpu_layers
        window = window if window is not None else rec.window
        reason = rec.reason
    settings = EngineSettings(
        model_path=Path(path),
        n_ctx=chosen_ctx,
        type_k=kv_type,
        type_v=kv_type,
        n_threads=threads,
        n_gpu_layers=chosen_layers,
        force=force,
        rpc_servers=rpc_servers,
    )
    return RunConfig(settings, window, reason)


def check_threads(threads: int | None) -> None:
    """--threads: 1..MAX_THREADS (None: all cores)."""
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise BadInput(f"--threads must be between 1 and {MAX_THREADS}, got {threads}")


def engine_settings(**options: object) -> EngineSettings:
    """The EngineSettings of `run_config` (callers that do not run a sink window)."""
    return run_config(**options).settings  # type: ignore[arg-type]


def _usable_device() -> str:
    """The planner's target: a GPU only when this llama.cpp build can offload to it."""
    from localctx.engine.devices import backend_name

    backend = backend_name()
    return backend if backend in ("cuda", "metal", "vulkan") else "cpu"
