"""Cancellation: the one event that stops an engine's current work, wherever it is.

A front end hands the engine an event for a unit of work (`with engine.cancellable(event):`);
setting it from any thread stops that work at the next point the engine can stop: between
prefill chunks, inside a chunk through llama.cpp's abort callback (within one ubatch), and
between generated tokens. A stopped prefill raises `Cancelled`; a stopped generation ends with
stop_reason "cancelled". `cancellable(None)` marks work that must not stop half-way (restoring
a saved cache), even inside a cancellable block.

Why an event handed in, not a flag the engine clears: a flag cleared at the start of every
chunk loses a cancel that arrives between chunks (it did: Esc during a 200 KB paste was lost).
A fresh event per unit of work cannot be cleared by anyone but its owner.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from localctx.errors import Cancelled


class Cancellation:
    """Mixin for engines: `cancellable(event)`, `cancelled`, `check_cancel()`, `cancel()`."""

    _interrupt: threading.Event | None = None

    @contextlib.contextmanager
    def cancellable(self, cancel: threading.Event | None) -> Iterator[None]:
        """Within this block, setting `cancel` stops the engine's work (None: nothing does)."""
        previous = self._interrupt
        self._interrupt = cancel
        try:
            yield
        finally:
            self._interrupt = previous

    @property
    def cancelled(self) -> bool:
        event = self._interrupt
        return event is not None and event.is_set()

    def check_cancel(self, what: str = "stopped") -> None:
        if self.cancelled:
            raise Cancelled(what)

    def cancel(self) -> None:
        """Stop the current work from another thread (sets the event handed in, if any)."""
        event = self._interrupt
        if event is not None:
            event.set()
