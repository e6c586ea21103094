"""One conversation without a UI: messages in, streamed tokens out. Used by `ask` and the TUI.

The cache is reused across turns: the new prompt is compared with the tokens already in the
KV cache and only the part after the common prefix is decoded (re-prefilling a 1,000-token
history costs 4-8 s on 2 cores; reusing it costs nothing).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from localctx.engine.base import ChatMessage, Engine, Sampling, TokenEvent

DEFAULT_SYSTEM = (
    "You are localctx, a helpful assistant running fully offline on the user's machine. "
    "Answer concisely and accurately."
)


@dataclass
class TurnResult:
    answer: str
    prompt_tokens: int
    completion_tokens: int
    prefill_tps: float
    decode_tps: float
    reused_tokens: int
    stop_reason: str


@dataclass
class Session:
    engine: Engine
    system_prompt: str = DEFAULT_SYSTEM
    messages: list[ChatMessage] = field(default_factory=list)

    def stream(
        self,
        user_text: str,
        sampling: Sampling | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> Iterator[TokenEvent]:
        """Add the user's message, prefill what the cache lacks, and stream the reply."""
        sampling = sampling or Sampling()
        self.messages.append({"role": "user", "content": user_text})
        prompt = self.engine.format_chat(self._with_system(self.messages))
        tokens = self.engine.tokenize(prompt, add_special=True)
        self._last_prompt_tokens = len(tokens)
        self._last_reused = self._prefill(tokens)
        pieces: list[str] = []
        try:
            for event in self.engine.generate(sampling, cancel=cancel):
                pieces.append(event.text)
                yield event
        finally:
            self.messages.append({"role": "assistant", "content": "".join(pieces).strip()})

    def ask(
        self,
        user_text: str,
        sampling: Sampling | None = None,
        *,
        cancel: threading.Event | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> TurnResult:
        for event in self.stream(user_text, sampling, cancel=cancel):
            if on_text and event.text:
                on_text(event.text)
        stats = self.engine.stats
        return TurnResult(
            answer=self.messages[-1]["content"],
            prompt_tokens=self._last_prompt_tokens,
            completion_tokens=stats.decode_tokens,
            prefill_tps=stats.prefill_tps,
            decode_tps=stats.decode_tps,
            reused_tokens=self._last_reused,
            stop_reason=stats.stop_reason,
        )

    def _with_system(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not self.system_prompt:
            return list(messages)
        return [{"role": "system", "content": self.system_prompt}, *messages]

    def _prefill(self, tokens: list[int]) -> int:
        """Keep the cached common prefix, drop the rest, decode the new tail."""
        cached = self.engine.tokens
        common = 0
        limit = min(len(cached), len(tokens) - 1)  # always decode >= 1 token for fresh logits
        while common < limit and cached[common] == tokens[common]:
            common += 1
        if common < len(cached):
            self.engine.kv_remove(common, -1)
        self.engine.decode(tokens[common:])
        return common
