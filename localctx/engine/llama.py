"""LlamaEngine: the Engine protocol on llama-cpp-python's low-level bindings.

Why not the high-level `Llama` class: it raises on context overflow and never shifts the
cache, and it leaves flash attention off (a quantized V cache then fails to load). Here the
caller owns positions: decode appends at `n_past`, and the KV policy evicts and shifts through
`kv_remove`/`kv_shift` (seq_rm + seq_add; llama.cpp re-ropes K, also when K is quantized).

Native resources have one owner: model, context, batch and samplers are freed in reverse order
by `close()`, which is idempotent; the engine is a context manager.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from localctx.engine import native_log, rpc
from localctx.engine.base import (
    ChatMessage,
    EngineSettings,
    GenerationStats,
    KvAllocation,
    MakeRoom,
    ModelFacts,
    Sampling,
    TokenEvent,
)
from localctx.engine.cachetypes import cache_type, check_cache_types
from localctx.engine.cancellation import Cancellation
from localctx.engine.kvstate import CachedKeys, parse_keys
from localctx.engine.lifetime import NativeOwner
from localctx.engine.positions import PositionMirror
from localctx.engine.queries import QueryCapture, RecentQueries
from localctx.errors import BadInput, Cancelled, ContextTooLarge, EngineFailed
from localctx.models.ggufmeta import GgufInfo, read_gguf

log = logging.getLogger("localctx.engine")
_backend_ready = False
_backend_lock = threading.Lock()


def _init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            native_log.install()
            llama_cpp.llama_backend_init()
            _backend_ready = True


class Utf8Stream:
    """Turns token pieces (bytes) into text without splitting a UTF-8 character."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, piece: bytes) -> str:
        return self._decoder.decode(piece)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class LlamaEngine(NativeOwner, Cancellation):
    """One model, one context, sequence 0. Not thread-safe: one caller at a time (but
    `cancel()` and the event given to `cancellable` may be set from any thread)."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.stats = GenerationStats()
        self.meta: GgufInfo = read_gguf(settings.model_path)  # validates before llama.cpp sees it
        self._check_context(settings, self.meta)
        type_k, type_v = cache_type(settings.type_k), cache_type(settings.type_v)
        self.rules = check_cache_types(
            type_k.name,
            type_v.name,
            (self.meta.key_length, self.meta.value_length),
            backend=_backend_name(),
            flash_attn=settings.flash_attn,
        )
        self._closed = False
        self._model: Any = None
        self._ctx: Any = None
        self._batch: Any = None
        self._mirror = PositionMirror()  # which token each position of sequence 0 holds
        _init_backend()
        if settings.rpc_servers:  # registers the servers' devices; the load below uses them
            rpc.register(settings.rpc_servers)

        marker = native_log.mark()
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = settings.n_gpu_layers if settings.n_gpu_layers >= 0 else 999
        self._model = llama_cpp.llama_model_load_from_file(
            str(settings.model_path).encode(), mparams
        )
        if not self._model:
            raise EngineFailed(
                f"llama.cpp could not load {settings.model_path}: "
                f"{native_log.last_error(native_log.since(marker))}"
            )
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        # What llama.cpp placed, not what was asked for (--gpu-layers -1 asks for "all").
        placed = native_log.layers_offloaded(native_log.since(marker))
        self.layers_offloaded = placed[0] if placed else 0

        threads = settings.n_threads or os.cpu_count() or 1
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = settings.n_ctx
        cparams.n_batch = settings.n_batch
        cparams.n_ubatch = settings.n_batch
        cparams.n_seq_max = 1
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.type_k = type_k.ggml_type
        cparams.type_v = type_v.ggml_type
        cparams.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if self.rules.flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
            if settings.flash_attn is None
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        cparams.swa_full = settings.swa_full
        cparams.no_perf = False
        # Reads the event only: a signal handler sets it (never raises in here: an exception
        # inside a ctypes callback is printed and dropped, and the decode goes on).
        self._abort_cb = ggml_abort = llama_cpp.ggml_abort_callback(lambda _data: self.cancelled)
        cparams.abort_callback = ggml_abort
        cparams.abort_callback_data = None
        self._abort_on = True
        # Only for `--evict snapkv|h2o`: ggml then calls the callback for every graph node
        # (engine/qcapture.c in C; the Python one where it cannot be built).
        self.queries = QueryCapture(_libggml()) if settings.capture_queries else None
        if self.queries is not None:
            native = self.queries.c_callback
            func, user = native if native is not None else (self.queries.callback, None)
            self._eval_cb = llama_cpp.ggml_backend_sched_eval_callback(func)
            cparams.cb_eval = self._eval_cb
            cparams.cb_eval_user_data = ctypes.c_void_p(user) if user is not None else None
        ctx_marker = native_log.mark()
        self._ctx = llama_cpp.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            reason = native_log.last_error(native_log.since(ctx_marker))
            self.close()
            raise EngineFailed(f"llama.cpp could not create a context: {reason}")
        created = native_log.since(ctx_marker)
        self._alloc = native_log.kv_allocation(created)
        # With flash attention on "auto", llama.cpp decides while reserving the graph and
        # says so in its log; report what it chose, so benchmarks give a baseline the same.
        self.flash_attn = native_log.flash_attn_enabled(created, default=self.rules.flash_attn)
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(settings.n_batch, 0, 1)
        self._template = _chat_template(
            self.meta,
            bos=self.token_piece(llama_cpp.llama_vocab_bos(self._vocab), special=True),
            eos=self.token_piece(llama_cpp.llama_vocab_eos(self._vocab), special=True),
        )

    # ------------------------------------------------------------------ model facts
    @property
    def n_ctx(self) -> int:
        return int(llama_cpp.llama_n_ctx(self._ctx))

    @property
    def n_vocab(self) -> int:
        return int(self._n_vocab)

    @property
    def model_name(self) -> str:
        return self.meta.name

    @property
    def chat_template_source(self) -> str:
        return "gguf" if self._template else "none (plain transcript)"

    @property
    def model_facts(self) -> ModelFacts:
        return ModelFacts(block_count=self.meta.block_count, swa=any(self.meta.swa_layers))

    # ------------------------------------------------------------------ text
    def tokenize(self, text: str, *, add_special: bool = False) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buf = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, capacity, add_special, True)
        if n < 0:
            capacity = -n
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), buf, capacity, add_special, True
            )
        return list(buf[:n])

    def token_piece(self, token: int, *, special: bool = False) -> bytes:
        if token < 0:
            return b""
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, -n, 0, special)
        return buf.raw[:n]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.token_piece(t) for t in tokens).decode("utf-8", errors="replace")

    def format_chat(
        self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
    ) -> str:
        if self._template is None:
            return _plain_transcript(messages, add_generation_prompt)
        self._template.add_generation_prompt = add_generation_prompt
        prompt: str = self._template(messages=list(messages)).prompt
        return prompt

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    # ------------------------------------------------------------------ decoding
    @property
    def n_past(self) -> int:
        return self._mirror.n_past

    @property
    def tokens(self) -> list[int]:
        return self._mirror.tokens

    @property
    def cells_used(self) -> int:
        return self._mirror.cells_used

    def decode(self, tokens: Sequence[int], *, make_room: MakeRoom | None = None) -> None:
        """Append tokens at n_past in n_batch chunks; logits only for the last one."""
        start = time.perf_counter()
        step = self.settings.n_batch
        for i in range(0, len(tokens), step):
            chunk = tokens[i : i + step]
            self.check_cancel("prefill stopped")  # before make_room: no eviction for nothing
            if make_room:
                make_room(len(chunk))
            self._decode_chunk(chunk, all_logits=False)
        if len(tokens) > 1:
            self.stats.prefill_tokens = len(tokens)
            self.stats.prefill_seconds = time.perf_counter() - start

    def decode_all_logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Append tokens and return logits for every one of them (perplexity)."""
        out = np.empty((len(tokens), self._n_vocab), dtype=np.float32)
        step = self.settings.n_batch
        for i in range(0, len(tokens), step):
            chunk = tokens[i : i + step]
            self._decode_chunk(chunk, all_logits=True)
            ptr = llama_cpp.llama_get_logits(self._ctx)
            out[i : i + len(chunk)] = np.ctypeslib.as_array(ptr, shape=(len(chunk), self._n_vocab))
        return out

    def last_logits(self) -> np.ndarray:
        ptr = llama_cpp.llama_get_logits_ith(self._ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).copy()

    def _decode_chunk(
        self, chunk: Sequence[int], *, all_logits: bool, interruptible: bool = True
    ) -> None:
        batch = self._batch
        pos0 = self._mirror.n_past
        if self.queries is not None:
            self.queries.begin_batch(pos0, len(chunk))
        n = len(chunk)
        for j, tok in enumerate(chunk):
            batch.token[j] = tok
            batch.pos[j] = pos0 + j
            batch.n_seq_id[j] = 1
            batch.seq_id[j][0] = 0
            batch.logits[j] = all_logits
        batch.logits[n - 1] = True
        batch.n_tokens = n
        if interruptible:
            self.check_cancel("prefill stopped")
        # ggml calls the abort callback after every graph node (515 per SmolLM2 token), and a
        # Python callback needs the GIL: while another Python thread runs (the TUI), decode was
        # 18-25% slower on 1 thread and 2.9x slower on 2 (measured here). Only a prefill needs
        # it: generation checks its cancel event between tokens.
        want = n > 1 and interruptible
        if want != self._abort_on:
            self._abort_on = want
            callback = self._abort_cb if self._abort_on else llama_cpp.ggml_abort_callback(0)
            llama_cpp.llama_set_abort_callback(self._ctx, callback, None)
        rc = llama_cpp.llama_decode(self._ctx, batch)
        if self.queries is not None and rc == 0:
            self.queries.end_batch()
        if rc == 2:
            # llama.cpp removed the aborted ubatch's cells itself; the mirror never had them.
            raise Cancelled("prefill stopped")
        if rc == 1:
            raise EngineFailed(
                f"the KV cache is full ({self.cells_used} of {self.n_ctx} cells): "
                "use a sink window (--window) or a larger --ctx"
            )
        if rc != 0:
            raise EngineFailed(f"llama_decode failed with code {rc}")
        self._mirror.extend(chunk)

    def generate(
        self,
        sampling: Sampling,
        *,
        cancel: threading.Event | None = None,
        make_room: MakeRoom | None = None,
    ) -> Iterator[TokenEvent]:
        """Sample from the current state; each token is decoded before the next is sampled.

        Cancellation (`cancel`, or the event given to `cancellable`) is checked before every
        sample, so it stops within one token, with stop_reason "cancelled".
        """
        if not self._mirror.n_past:
            raise BadInput("nothing to continue from: decode a prompt first")
        sampler = self._sampler(sampling)
        stream = Utf8Stream()
        self.stats.decode_tokens = 0
        self.stats.stop_reason = "length"
        start = time.perf_counter()
        try:
            for index in range(sampling.max_tokens):
                if (cancel is not None and cancel.is_set()) or self.cancelled:
                    self.stats.stop_reason = "cancelled"
                    break
                token = int(llama_cpp.llama_sampler_sample(sampler, self._ctx, -1))
                if self.is_eog(token):
                    self.stats.stop_reason = "eog"
                    break
                yield TokenEvent(token, stream.push(self.token_piece(token)), index, self.n_past)
                if make_room:
                    make_room(1)
                self._decode_chunk([token], all_logits=False, interruptible=False)
                self.stats.decode_tokens += 1
                self.stats.decode_seconds = time.perf_counter() - start
        finally:
            llama_cpp.llama_sampler_free(sampler)

    def _sampler(self, s: Sampling) -> Any:
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = llama_cpp.llama_sampler_chain_add
        if s.repeat_penalty != 1.0:
            add(
                chain,
                llama_cpp.llama_sampler_init_penalties(
                    self._n_vocab, s.repeat_last_n, s.repeat_penalty, 0.0, 0.0
                ),
            )
        if s.temperature <= 0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            add(chain, llama_cpp.llama_sampler_init_top_k(s.top_k))
            add(chain, llama_cpp.llama_sampler_init_top_p(s.top_p, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(s.temperature))
            add(chain, llama_cpp.llama_sampler_init_dist(s.seed & 0xFFFFFFFF))
        return chain

    # ------------------------------------------------------------------ KV operations
    def kv_remove(self, p0: int, p1: int) -> bool:
        """Remove positions [p0, p1) (p1 < 0: to the end). Positions are not renumbered."""
        ok = bool(llama_cpp.llama_memory_seq_rm(self._mem, 0, p0, p1))
        if ok:
            self._mirror.remove(p0, p1)
            if self.queries is not None:
                self.queries.truncate(p0)
        return ok

    def kv_shift(self, p0: int, p1: int, delta: int) -> None:
        """Add delta to positions in [p0, p1) (p1 < 0: to the end); K is re-roped lazily."""
        if not self.can_shift:
            raise EngineFailed("this model's KV cache cannot be shifted (M-RoPE or recurrent)")
        llama_cpp.llama_memory_seq_add(self._mem, 0, p0, p1, delta)
        self._mirror.shift(p0, p1, delta)
        if self.queries is not None:
            self.queries.clear()  # captured at positions that moved

    def kv_remove_runs(self, runs: Sequence[tuple[int, int]]) -> None:
        """Remove the disjoint position runs [p0, p1) and close every gap (seq_rm + seq_add
        per run, newest first, so the older runs keep their numbers): K is re-roped once, at
        the next decode."""
        if not self.can_shift:
            raise EngineFailed("this model's KV cache cannot be shifted (M-RoPE or recurrent)")
        for p0, p1 in sorted(runs, reverse=True):
            if not llama_cpp.llama_memory_seq_rm(self._mem, 0, p0, p1):
                raise EngineFailed(f"llama.cpp refused to remove positions {p0}..{p1}")
            llama_cpp.llama_memory_seq_add(self._mem, 0, p1, -1, -(p1 - p0))
        self._mirror.compact(runs)
        if self.queries is not None:
            self.queries.clear()  # captured at positions that moved

    def kv_keys(self, layers: tuple[int, ...] | None = None) -> CachedKeys:
        """The K rows of the cached cells (engine/kvstate.py), for scored eviction."""
        size = llama_cpp.llama_state_seq_get_size(self._ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_seq_get_data(self._ctx, buf, size, 0)
        return parse_keys(memoryview(buf)[:n], layers=layers)

    def recent_queries(self) -> RecentQueries | None:
        return self.queries.recent() if self.queries is not None else None

    def watch_queries_from(self, position: int) -> None:
        """Capture queries only in batches that reach `position` (the eviction is near)."""
        if self.queries is not None:
            self.queries.from_position = max(0, position)

    def kv_clear(self) -> None:
        llama_cpp.llama_memory_clear(self._mem, True)
        self._mirror.reset()
        if self.queries is not None:
            self.queries.clear()

    @property
    def can_shift(self) -> bool:
        return bool(llama_cpp.llama_memory_can_shift(self._mem))

    def pos_range(self) -> tuple[int, int]:
        return (
            int(llama_cpp.llama_memory_seq_pos_min(self._mem, 0)),
            int(llama_cpp.llama_memory_seq_pos_max(self._mem, 0)),
        )

    def kv_allocation(self) -> KvAllocation:
        return self._alloc

    # ------------------------------------------------------------------ state
    def state_get(self) -> bytes:
        size = llama_cpp.llama_state_seq_get_size(self._ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_seq_get_data(self._ctx, buf, size, 0)
        return ctypes.string_at(buf, n)  # bytes(buf[:n]) built a list: 3.5 s for 89 MiB

    def state_set(self, data: bytes | memoryview, tokens: Sequence[int]) -> None:
        """Restore sequence 0 from `state_get` bytes; `tokens` are the tokens it holds."""
        self.kv_clear()
        # A writable buffer (a snapshot loaded into a bytearray) is passed as it is; bytes
        # are copied once, since ctypes cannot point into an immutable object.
        writable = isinstance(data, bytearray | memoryview) and not memoryview(data).readonly
        kind = ctypes.c_uint8 * len(data)
        buf = kind.from_buffer(data) if writable else kind.from_buffer_copy(data)
        if llama_cpp.llama_state_seq_set_data(self._ctx, buf, len(data), 0) == 0:
            self.kv_clear()
            raise EngineFailed("llama.cpp rejected the saved state (another model or settings?)")
        self._mirror.reset(tokens)
        lo, hi = self.pos_range()
        if hi + 1 != self._mirror.n_past:
            self.kv_clear()
            raise EngineFailed(f"saved state holds positions {lo}..{hi}, not {len(tokens)} tokens")

    def state_save(self, path: Path) -> int:
        """Write sequence 0 and its tokens with llama.cpp's own file format. Returns bytes."""
        tokens = self.tokens
        arr = (llama_cpp.llama_token * max(len(tokens), 1))(*tokens)
        n = llama_cpp.llama_state_seq_save_file(self._ctx, str(path).encode(), 0, arr, len(tokens))
        if n == 0:
            raise EngineFailed(f"could not write the KV state to {path}")
        return int(n)

    def state_load(self, path: Path) -> list[int]:
        self.kv_clear()
        capacity = self.n_ctx
        arr = (llama_cpp.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        n = llama_cpp.llama_state_seq_load_file(
            self._ctx, str(path).encode(), 0, arr, capacity, ctypes.byref(count)
        )
        if n == 0:
            self.kv_clear()
            raise EngineFailed(f"llama.cpp could not load the KV state in {path}")
        self._mirror.reset(arr[: count.value])
        return self._mirror.tokens

    # ------------------------------------------------------------------ lifetime
    def backend_info(self) -> dict[str, Any]:
        return {
            "backend": _backend_name(),
            "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
            "rpc": bool(llama_cpp.llama_supports_rpc()),
            "n_gpu_layers": self.settings.n_gpu_layers,
            "layers_offloaded": self.layers_offloaded,
            "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
            "flash_attn": self.flash_attn,
            "type_k": self.settings.type_k,
            "type_v": self.settings.type_v,
            "notes": list(self.rules.notes),
        }

    @staticmethod
    def _check_context(settings: EngineSettings, meta: GgufInfo) -> None:
        if settings.n_ctx <= 0:
            raise BadInput(f"context size must be positive, got {settings.n_ctx}")
        trained = meta.context_length
        if trained and settings.n_ctx > trained and not settings.force:
            raise ContextTooLarge(
                f"context {settings.n_ctx} is above {meta.name}'s trained {trained}; "
                "pass --force to run it anyway (RoPE scaling is then in effect and quality drops)"
            )
        if trained and settings.n_ctx > trained:
            log.warning(
                "context %d is above the trained %d: RoPE scaling is in effect, expect lower "
                "quality past %d tokens",
                settings.n_ctx,
                trained,
                trained,
            )


def _backend_name() -> str:
    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    for name, marker in (("cuda", "CUDA"), ("metal", "METAL"), ("vulkan", "VULKAN")):
        if marker in info.upper() and llama_cpp.llama_supports_gpu_offload():
            return name
    return "cpu"


def _chat_template(meta: GgufInfo, *, bos: bytes, eos: bytes) -> Any:
    """The model's own Jinja template from GGUF metadata, through llama-cpp-python's formatter."""
    template = meta.raw.get("tokenizer.chat_template")
    if not isinstance(template, str):
        return None
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    return Jinja2ChatFormatter(
        template=template,
        eos_token=eos.decode("utf-8", errors="replace"),
        bos_token=bos.decode("utf-8", errors="replace"),
    )


def _plain_transcript(messages: Sequence[ChatMessage], add_generation_prompt: bool) -> str:
    """For base models without a template (Gemma-3-270M): a plain labelled transcript."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    if add_generation_prompt:
        lines.append("Assistant:")
    return "\n\n".join(lines)


def _libggml() -> Any:
    """ggml's shared library as llama-cpp-python loaded it (for the eval callback's calls)."""
    from llama_cpp import _ggml

    return _ggml.libggml
