"""The Engine protocol: what the KV policy, memory, session and UI may ask of a model.

Positions are explicit. The engine mirrors, position by position, which token each KV cell
holds (sequence 0), so the KV policy can evict and shift and still know the exact text it
removed. `n_past` is the next free position (pos_max + 1).

Work is stopped through an event handed in with `cancellable(event)`: a prefill raises
`localctx.errors.Cancelled` (within one ubatch on llama.cpp) and leaves the cache holding the
chunks decoded before it; a generation ends with stop_reason "cancelled".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict, runtime_checkable

import numpy as np

from localctx.engine.kvstate import CachedKeys
from localctx.engine.queries import RecentQueries


class ChatMessage(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class EngineSettings:
    """How to load a model. Everything that changes the KV cache's bytes is here."""

    model_path: Path
    n_ctx: int = 4096
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: bool | None = None  # None: llama.cpp decides; forced on for a quantized V
    n_gpu_layers: int = 0  # -1: all layers
    n_threads: int | None = None  # None: all cores
    n_batch: int = 512
    swa_full: bool = False  # llama.cpp's default (true) costs Gemma-3 ~6x KV memory
    force: bool = False  # allow n_ctx above the trained context (RoPE scaling in effect)
    rpc_servers: str | None = None  # "host:port,host:port" when the build has RPC
    seed: int = 0
    # Copy the newest queries of every layer out of llama.cpp's graph (engine/queries.py):
    # what `--evict snapkv|h2o` score with. A callback per graph node, so off unless asked.
    capture_queries: bool = False


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; temperature 0 means greedy (deterministic)."""

    max_tokens: int = 512
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    seed: int = 0
    # Text that ends the reply (an API client's `stop`); the session cuts the reply before it
    # and takes those tokens back out of the cache. Engines ignore it.
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class TokenEvent:
    """One generated token; `text` is the UTF-8-safe increment (may be empty mid-character)."""

    token: int
    text: str
    index: int
    pos: int


@dataclass
class GenerationStats:
    """Throughput of the last prefill and the last generation."""

    prefill_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_tokens: int = 0
    decode_seconds: float = 0.0
    stop_reason: str = ""  # "eog" | "length" | "cancelled"

    @property
    def prefill_tps(self) -> float:
        return self.prefill_tokens / self.prefill_seconds if self.prefill_seconds else 0.0

    @property
    def decode_tps(self) -> float:
        return self.decode_tokens / self.decode_seconds if self.decode_seconds else 0.0


@dataclass(frozen=True)
class KvAllocation:
    """KV bytes llama.cpp allocated, read from its own report at context creation."""

    total_bytes: int
    k_bytes: int
    v_bytes: int
    cells: tuple[int, ...]  # one entry per cache (two for SWA models: global, window)
    lines: tuple[str, ...] = field(default=(), repr=False)


MakeRoom = Callable[[int], None]  # called with n tokens about to be decoded


@dataclass(frozen=True)
class ModelFacts:
    """What the window policy and the gauge need to know of the loaded model."""

    block_count: int = 0  # transformer layers (0: not known, e.g. behind a remote server)
    swa: bool = False  # some layers keep a sliding-window cache (Gemma-3)
    # The cache is a mirror rebuilt as text (a remote server keeps its own KV cache): the
    # window's "re-prefill" fallback costs nothing there.
    rebuild_is_free: bool = False


@runtime_checkable
class Engine(Protocol):
    settings: EngineSettings
    stats: GenerationStats

    # --- model facts
    @property
    def n_ctx(self) -> int: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def model_name(self) -> str: ...
    @property
    def chat_template_source(self) -> str: ...  # "gguf" or "none (plain transcript)"
    @property
    def model_facts(self) -> ModelFacts: ...

    # --- text
    def tokenize(self, text: str, *, add_special: bool = False) -> list[int]: ...
    def detokenize(self, tokens: Sequence[int]) -> str: ...
    def token_piece(self, token: int) -> bytes: ...
    def format_chat(
        self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
    ) -> str: ...
    def is_eog(self, token: int) -> bool: ...

    # --- decoding
    @property
    def n_past(self) -> int: ...
    @property
    def tokens(self) -> list[int]: ...  # tokens held in the cache, in position order
    def decode(self, tokens: Sequence[int], *, make_room: MakeRoom | None = None) -> None: ...
    def decode_all_logits(self, tokens: Sequence[int]) -> np.ndarray: ...
    def last_logits(self) -> np.ndarray: ...
    def generate(
        self,
        sampling: Sampling,
        *,
        cancel: threading.Event | None = None,
        make_room: MakeRoom | None = None,
    ) -> Iterator[TokenEvent]: ...

    # --- stopping work (localctx.engine.cancellation)
    def cancellable(self, cancel: threading.Event | None) -> AbstractContextManager[None]: ...
    @property
    def cancelled(self) -> bool: ...

    # --- KV operations (sequence 0)
    def kv_remove(self, p0: int, p1: int) -> bool: ...
    def kv_shift(self, p0: int, p1: int, delta: int) -> None: ...
    def kv_remove_runs(self, runs: Sequence[tuple[int, int]]) -> None: ...  # and close gaps
    def kv_keys(self, layers: tuple[int, ...] | None = None) -> CachedKeys: ...
    def recent_queries(self) -> RecentQueries | None: ...  # with settings.capture_queries
    def watch_queries_from(self, position: int) -> None: ...  # capture only batches reaching it
    def kv_clear(self) -> None: ...
    @property
    def can_shift(self) -> bool: ...
    def pos_range(self) -> tuple[int, int]: ...  # (pos_min, pos_max), (-1, -1) when empty
    @property
    def cells_used(self) -> int: ...
    def kv_allocation(self) -> KvAllocation: ...

    # --- state
    def state_get(self) -> bytes: ...
    def state_set(self, data: bytes | memoryview, tokens: Sequence[int]) -> None: ...
    def state_save(self, path: Path) -> int: ...
    def state_load(self, path: Path) -> list[int]: ...

    # --- lifetime
    def backend_info(self) -> dict[str, Any]: ...
    def close(self) -> None: ...
    def __enter__(self) -> Engine: ...
    def __exit__(self, *exc: object) -> None: ...
