"""TokenBatcher: turns a token stream into a few transcript updates per second.

Posting one message per token floods the UI at 30+ tok/s and each Markdown append costs a
layout pass; flushing every ~150 ms keeps the reply visibly streaming (~7 updates/s) while the
work per update stays flat whatever the model's speed. Pure: the caller supplies the clock.
"""

from __future__ import annotations


class TokenBatcher:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._pending: list[str] = []
        self._pending_tokens = 0
        self._last_flush: float | None = None
        self.total_tokens = 0

    def add(self, text: str, now: float) -> tuple[str, int] | None:
        """Add one token's text; return (text, n_tokens) when a flush is due, else None."""
        self._pending.append(text)
        self._pending_tokens += 1
        self.total_tokens += 1
        if self._last_flush is None:
            # The first token goes out at once: it is what tells the user the model started.
            self._last_flush = now
            return self._take()
        if now - self._last_flush >= self.interval:
            self._last_flush = now
            return self._take()
        return None

    def flush(self) -> tuple[str, int] | None:
        """Whatever is pending (the tail of the reply), or None when nothing is."""
        return self._take() if self._pending_tokens else None

    def _take(self) -> tuple[str, int]:
        text, n = "".join(self._pending), self._pending_tokens
        self._pending, self._pending_tokens = [], 0
        return text, n
