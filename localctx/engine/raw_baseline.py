"""RawLlama: plain llama-cpp-python (`llama_cpp.Llama`), the baseline `bench all` compares with.

It lives in engine/ only because engine/ is the one package allowed to import llama_cpp; the
product never uses it. It is written the way a llama-cpp-python user would write it — the
high-level `Llama` object, `Llama.eval` for the prompt and `Llama.generate` for a greedy loop -
and it is given exactly the settings LlamaEngine gets (n_ctx, n_batch = n_ubatch, K/V types,
threads, flash attention, swa_full), so the only difference measured is the code around
llama_decode.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence

import llama_cpp

from localctx.engine.base import EngineSettings
from localctx.engine.cachetypes import cache_type


class RawLlama:
    """One `llama_cpp.Llama` with an EngineSettings' numbers. A context manager."""

    def __init__(self, settings: EngineSettings, *, flash_attn: bool) -> None:
        threads = settings.n_threads or os.cpu_count() or 1
        self._llm = llama_cpp.Llama(
            model_path=str(settings.model_path),
            n_ctx=settings.n_ctx,
            n_batch=settings.n_batch,
            n_ubatch=settings.n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            type_k=cache_type(settings.type_k).ggml_type,
            type_v=cache_type(settings.type_v).ggml_type,
            flash_attn=flash_attn,
            swa_full=settings.swa_full,
            n_gpu_layers=settings.n_gpu_layers if settings.n_gpu_layers >= 0 else 999,
            seed=settings.seed,
            verbose=False,
        )

    def reset(self) -> None:
        """Forget the cache (the next `append` starts at position 0)."""
        self._llm.reset()  # type: ignore[no-untyped-call]  # llama_cpp leaves it unannotated

    def append(self, tokens: Sequence[int]) -> float:
        """`Llama.eval` these tokens after what is cached; returns seconds."""
        start = time.perf_counter()
        self._llm.eval(list(tokens))
        return time.perf_counter() - start

    def stream(self, prompt: Sequence[int]) -> Iterator[int]:
        """Greedy tokens after `prompt` (already evaluated), from `Llama.generate`.

        `Llama.generate` finds the whole prompt cached and samples at once; each token it yields
        is decoded when the caller asks for the next one — the same step the engine's
        generator takes (decode the previous token, sample the next). It never stops by itself.
        """
        return iter(
            self._llm.generate(list(prompt), temp=0.0, top_k=1, repeat_penalty=1.0, reset=True)
        )

    def adopt(self, state: bytes, tokens: Sequence[int]) -> None:
        """Take over a sequence state saved by LlamaEngine.state_get (same model, settings):
        the cache then holds `tokens`, as if `append` had evaluated them (no logits yet: the
        next `append` of the following token computes them). Used to reach 32K-128K cells
        without prefilling twice; the prefill ratio is measured on the interleaved part."""
        import ctypes

        self._llm.reset()  # type: ignore[no-untyped-call]  # llama_cpp leaves it unannotated
        ctx = self._llm._ctx.ctx  # the low-level context of this Llama
        mem = llama_cpp.llama_get_memory(ctx)
        llama_cpp.llama_memory_seq_rm(mem, 0, -1, -1)
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if llama_cpp.llama_state_seq_set_data(ctx, buf, len(state), 0) == 0:
            raise RuntimeError("llama.cpp rejected the state for the raw runner")
        n = len(tokens)
        self._llm.input_ids[:n] = list(tokens)
        self._llm.n_tokens = n

    def close(self) -> None:
        self._llm.close()

    def __enter__(self) -> RawLlama:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
