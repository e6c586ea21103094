"""Turn command-line choices into EngineSettings, once, before anything loads.

Defaults: the catalogue's default model, f16 KV, a context of min(trained, 8192).
"""

from __future__ import annotations

from localctx.engine.base import EngineSettings
from localctx.kv.types import cache_type
from localctx.models.catalogue import resolve_model
from localctx.models.ggufmeta import read_gguf

DEFAULT_CTX = 8192


def engine_settings(
    model: str | None = None,
    kv: str | None = None,
    n_ctx: int | None = None,
    window: int | None = None,
    force: bool = False,
    threads: int | None = None,
    gpu_layers: int | None = None,
) -> EngineSettings:
    path = resolve_model(model)
    kv_type = cache_type(kv or "f16").name
    if n_ctx is None:
        trained = read_gguf(path).context_length
        n_ctx = min(trained, DEFAULT_CTX) if trained else DEFAULT_CTX
    return EngineSettings(
        model_path=path,
        n_ctx=n_ctx,
        type_k=kv_type,
        type_v=kv_type,
        n_threads=threads,
        n_gpu_layers=gpu_layers if gpu_layers is not None else 0,
        force=force,
    )
