"""FakeEngine: a deterministic Engine for UI and unit tests (never instead of real-model tests).

Tokens are UTF-8 bytes (token id = byte value); replies come from a queue the test fills with
`enqueue("text")`, else the engine echoes the last user message. KV operations act on the same
position mirror the real engine keeps, so window logic can be unit-tested against it; it stops
work like the real engine (between chunks, inside a slow chunk, between tokens).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
from localctx.engine.bytetokens import ByteTokens
from localctx.engine.cancellation import Cancellation
from localctx.engine.kvstate import CachedKeys
from localctx.engine.positions import PositionMirror
from localctx.engine.queries import RecentQueries
from localctx.errors import EngineFailed

EOG = 256


class FakeEngine(Cancellation, ByteTokens):
    def __init__(
        self,
        settings: EngineSettings | None = None,
        *,
        token_delay: float = 0.0,
        can_shift: bool = True,
        bytes_per_token: int = 1024,
        chunk_delay: float = 0.0,
    ) -> None:
        self.settings = settings or EngineSettings(model_path=Path("fake.gguf"), n_ctx=4096)
        self.stats = GenerationStats()
        self.token_delay = token_delay
        self.chunk_delay = chunk_delay  # seconds per prefill chunk: a prefill to watch or stop
        self.replies: deque[str] = deque()
        self._can_shift = can_shift
        self._bytes_per_token = bytes_per_token
        self._mirror = PositionMirror()
        # llama.cpp samples from the logits of the last decoded token: after the tail is
        # removed and nothing decoded, they belong to a token no longer there. The fake then
        # answers nothing, as the real model did (it sampled the end of the removed reply).
        self._stale_logits = False
        self._last_prompt = ""
        self.closed = False

    def enqueue(self, *replies: str) -> None:
        self.replies.extend(replies)

    # model facts
    @property
    def n_ctx(self) -> int:
        return self.settings.n_ctx

    @property
    def n_vocab(self) -> int:
        return EOG + 1

    @property
    def model_name(self) -> str:
        return "fake"

    @property
    def chat_template_source(self) -> str:
        return "fake"

    @property
    def model_facts(self) -> ModelFacts:
        return ModelFacts()

    # text (tokenize, detokenize, token_piece: ByteTokens)
    def format_chat(
        self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
    ) -> str:
        text = "".join(f"<{m['role']}>{m['content']}\n" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")

    def is_eog(self, token: int) -> bool:
        return token == EOG

    # decoding
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
        step = self.settings.n_batch
        for i in range(0, len(tokens), step):
            chunk = list(tokens[i : i + step])
            self.check_cancel("prefill stopped")
            if make_room:
                make_room(len(chunk))
            if self.cells_used + len(chunk) > self.n_ctx:
                raise EngineFailed("the KV cache is full")
            if self.chunk_delay and len(chunk) > 1:
                time.sleep(self.chunk_delay)
                self.check_cancel("prefill stopped")  # as llama.cpp's abort callback does
            self._mirror.extend(chunk)
            self._stale_logits = False
        self.stats.prefill_tokens = len(tokens)
        self.stats.prefill_seconds = max(len(tokens), 1) * 1e-5
        self._last_prompt = self.detokenize(self.tokens)

    def decode_all_logits(self, tokens: Sequence[int]) -> np.ndarray:
        self.decode(tokens)
        return np.zeros((len(tokens), self.n_vocab), dtype=np.float32)

    def last_logits(self) -> np.ndarray:
        logits = np.zeros(self.n_vocab, dtype=np.float32)
        if self._mirror.last is not None:
            logits[self._mirror.last] = 1.0
        return logits

    def generate(
        self,
        sampling: Sampling,
        *,
        cancel: threading.Event | None = None,
        make_room: MakeRoom | None = None,
    ) -> Iterator[TokenEvent]:
        reply = self.replies.popleft() if self.replies else self._echo()
        data = b"" if self._stale_logits else reply.encode("utf-8")
        self.stats.decode_tokens = 0
        self.stats.stop_reason = "eog"
        start = time.perf_counter()
        for index, token in enumerate(data[: sampling.max_tokens]):
            if (cancel is not None and cancel.is_set()) or self.cancelled:
                self.stats.stop_reason = "cancelled"
                return
            if self.token_delay:
                time.sleep(self.token_delay)
            yield TokenEvent(
                token, bytes([token]).decode("latin-1") if token < 128 else "", index, self.n_past
            )
            if make_room:
                make_room(1)
            self._mirror.extend([token])
            self._stale_logits = False
            self.stats.decode_tokens += 1
            self.stats.decode_seconds = time.perf_counter() - start
        if len(data) > sampling.max_tokens:
            self.stats.stop_reason = "length"

    def _echo(self) -> str:
        last_user = self._last_prompt.rsplit("<user>", 1)[-1].split("\n", 1)[0]
        return f"echo: {last_user}"

    # KV operations
    def kv_remove(self, p0: int, p1: int) -> bool:
        if p1 < 0 or p1 >= self._mirror.n_past:
            self._stale_logits = True  # the last decoded token is gone
        self._mirror.remove(p0, p1)
        return True

    def kv_shift(self, p0: int, p1: int, delta: int) -> None:
        if not self._can_shift:
            raise EngineFailed("this model's KV cache cannot be shifted")
        self._mirror.shift(p0, p1, delta)

    def kv_remove_runs(self, runs: Sequence[tuple[int, int]]) -> None:
        if not self._can_shift:
            raise EngineFailed("this model's KV cache cannot be shifted")
        self._mirror.compact(runs)

    def recent_queries(self) -> RecentQueries | None:
        return None

    def watch_queries_from(self, position: int) -> None:
        return None  # no queries to capture here

    def kv_keys(self, layers: tuple[int, ...] | None = None) -> CachedKeys:
        """Two layers of 8-dim keys made from each token (byte) value: a byte's key norm grows
        with its value, so tests can predict what a key-norm policy keeps. Cells in position
        order."""
        tokens = np.asarray(self._mirror.tokens, dtype=np.float32)
        base = np.outer(1.0 + tokens / 32.0, np.ones(8, dtype=np.float32))
        keys = (base, base * 2.0)
        picked = keys if layers is None else tuple(keys[i] for i in layers if 0 <= i < 2)
        return CachedKeys(positions=np.arange(len(tokens), dtype=np.int64), keys=picked)

    def kv_clear(self) -> None:
        self._mirror.reset()
        self._stale_logits = False

    @property
    def can_shift(self) -> bool:
        return self._can_shift

    def pos_range(self) -> tuple[int, int]:
        return self._mirror.pos_range()

    def kv_allocation(self) -> KvAllocation:
        total = self.n_ctx * self._bytes_per_token
        return KvAllocation(total, total // 2, total // 2, (self.n_ctx,))

    # state
    def state_get(self) -> bytes:
        return bytes(self.tokens)

    def state_set(self, data: bytes | memoryview, tokens: Sequence[int]) -> None:
        self._mirror.reset(tokens)
        self._stale_logits = False

    def state_save(self, path: Path) -> int:
        data = bytes(t for t in self.tokens if t < EOG)
        path.write_bytes(data)
        return len(data)

    def state_load(self, path: Path) -> list[int]:
        self._mirror.reset(path.read_bytes())
        self._stale_logits = False
        return self.tokens

    # lifetime
    def backend_info(self) -> dict[str, Any]:
        return {
            "backend": "fake",
            "gpu_offload": False,
            "rpc": False,
            "n_gpu_layers": 0,
            "system_info": "fake",
            "flash_attn": False,
            "type_k": self.settings.type_k,
            "type_v": self.settings.type_v,
            "notes": [],
        }

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
