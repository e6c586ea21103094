"""`bench kv`: what each KV cache type costs in memory and time, measured on this machine.

Per type, on one context: a cold prefill of n_sink + 2N tokens (prefill tok/s, cold_prefill_ms),
a save and a load of that state to a file, N single-token decodes at the end of it (decode
tok/s, then removed), one eviction of N tokens after the sinks (seq_rm + seq_add + the next
decode, since llama.cpp re-ropes K lazily at the next decode) and, for comparison, a re-prefill
of what survived plus that same token (what the fallback pays). bytes_per_token is llama.cpp's
own allocation divided by its cells. Figures are measured, never asserted in tests.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from localctx.bench.ppl import first_tokens
from localctx.bench.settings import bench_settings
from localctx.engine import load_engine
from localctx.engine.allocation import bytes_per_token
from localctx.engine.cachetypes import cache_type, check_cache_types
from localctx.errors import BadInput
from localctx.kv.policy import SinkWindow
from localctx.models.ggufmeta import read_gguf

DEFAULT_TYPES = ("f16", "q8_0", "q4_0")
DECODE_STEPS = 16


@dataclass(frozen=True)
class KvTypeFigures:
    bytes_per_token: float
    prefill_tps: float
    decode_tps: float
    evict_ms: float | None  # None when the model's cache cannot shift
    reprefill_ms: float
    state_save_ms: float
    state_load_ms: float
    cold_prefill_ms: float
    state_bytes: int
    kv_bytes: int  # everything llama.cpp allocated for this context
    n_ctx: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_types(model_path: Path, types: tuple[str, ...]) -> tuple[str, ...]:
    """Canonical names; BadKvSetting for a type unknown or one this model cannot take."""
    if not types:
        raise BadInput("give at least one KV type")
    meta = read_gguf(model_path)
    names = tuple(cache_type(t).name for t in types)
    for name in names:
        check_cache_types(name, name, (meta.key_length, meta.value_length))
    return names


def run_kv(
    model_path: Path,
    text: str,
    *,
    types: tuple[str, ...] = DEFAULT_TYPES,
    tokens: int = 1000,
    n_sink: int = 4,
    n_threads: int | None = None,
) -> dict[str, Any]:
    if tokens < 1:
        raise BadInput(f"--tokens must be at least 1, got {tokens}")
    names = check_types(model_path, types)
    figures = {
        name: _measure(model_path, text, name, tokens=tokens, n_sink=n_sink, n_threads=n_threads)
        for name in names
    }
    return {
        "model": model_path.name,
        "tokens": tokens,
        "sinks": n_sink,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
        "types": {name: f.to_json() for name, f in figures.items()},
    }


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def _measure(
    model_path: Path, text: str, kv: str, *, tokens: int, n_sink: int, n_threads: int | None
) -> KvTypeFigures:
    held = n_sink + 2 * tokens
    settings = bench_settings(
        model_path=model_path,
        n_ctx=held + DECODE_STEPS + 1,
        type_k=kv,
        type_v=kv,
        n_threads=n_threads,
    )
    with load_engine(settings) as engine, tempfile.TemporaryDirectory() as tmp:
        ids = first_tokens(engine, text, held + DECODE_STEPS + 1)
        start = time.perf_counter()
        engine.decode(ids[:held])
        cold_s = time.perf_counter() - start

        path = Path(tmp) / "state.bin"
        start = time.perf_counter()
        state_bytes = engine.state_save(path)
        save_ms = _ms(start)
        start = time.perf_counter()
        engine.state_load(path)
        load_ms = _ms(start)

        start = time.perf_counter()
        for tok in ids[held : held + DECODE_STEPS]:
            engine.decode([tok])
        decode_s = time.perf_counter() - start
        engine.kv_remove(held, -1)

        nxt = ids[held : held + 1]
        evict_ms = None
        if engine.can_shift:
            start = time.perf_counter()
            engine.kv_remove(n_sink, n_sink + tokens)
            engine.kv_shift(n_sink + tokens, -1, -tokens)
            engine.decode(nxt)
            evict_ms = _ms(start)
            kept = engine.tokens[:-1]
        else:
            kept = ids[:n_sink] + ids[n_sink + tokens : held]
        start = time.perf_counter()
        engine.kv_clear()
        engine.decode(kept + nxt)
        reprefill_ms = _ms(start)

        alloc = engine.kv_allocation()
        return KvTypeFigures(
            bytes_per_token=round(bytes_per_token(alloc), 1),
            prefill_tps=round(held / cold_s, 1),
            decode_tps=round(DECODE_STEPS / decode_s, 1),
            evict_ms=evict_ms,
            reprefill_ms=reprefill_ms,
            state_save_ms=save_ms,
            state_load_ms=load_ms,
            cold_prefill_ms=round(cold_s * 1000, 2),
            state_bytes=state_bytes,
            kv_bytes=alloc.total_bytes,
            n_ctx=engine.n_ctx,
        )


def run_stream(
    model_path: Path,
    text: str,
    *,
    tokens: int,
    window: int,
    n_sink: int = 4,
    kv: str = "f16",
    n_threads: int | None = None,
    samples: int = 16,
) -> dict[str, Any]:
    """Decode a long stream through a SinkWindow of `window` cells; cells used are sampled
    along the way to show the memory stays flat. The context is sized to the window: on
    Gemma-3 (swa_full off) that keeps both caches the same size, so the window can shift."""
    if tokens < 1:
        raise BadInput(f"--stream must be at least 1 token, got {tokens}")
    name = check_types(model_path, (kv,))[0]
    settings = bench_settings(
        model_path=model_path, n_ctx=window, type_k=name, type_v=name, n_threads=n_threads
    )
    with load_engine(settings) as engine:
        policy = SinkWindow(engine, window=window, n_sink=n_sink)
        ids = first_tokens(engine, text, tokens)
        step = max(1, tokens // samples)
        cells: list[int] = []
        start = time.perf_counter()
        for i in range(0, tokens, step):
            policy.decode(ids[i : i + step])
            cells.append(engine.cells_used)
        seconds = time.perf_counter() - start
        stats = policy.stats()
        policy.queue.drain()
        return {
            "model": model_path.name,
            "kv": name,
            "tokens": tokens,
            "window": window,
            "sinks": n_sink,
            "mode": stats.mode,
            "peak_cells": stats.peak_cells,
            "cells_used_samples": cells,
            "evictions": stats.evictions,
            "evicted_tokens": stats.evicted_tokens,
            "kv_bytes": engine.kv_allocation().total_bytes,
            "kv_cells": list(engine.kv_allocation().cells),
            "seconds": round(seconds, 1),
            "tps": round(tokens / seconds, 1),
        }
