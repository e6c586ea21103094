"""What a context keeps so that work on it can be reported and taken back.

- `Stage`: a long step being reported (a prefill in tokens, summaries in segments).
- `CacheMark`: everything a message's prefill changes in the cache, as it was before it,
  including the cache's state when the message will evict (the evicted cells could otherwise
  only come back by reading them again: seconds per 1,000 tokens); `keep_state_if_evicting`
  saves it.

Must not: decode, render, or import llama_cpp / textual.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localctx.context.ledger import LedgerMark
from localctx.engine.base import Engine
from localctx.errors import EngineFailed
from localctx.progress import Progress, ProgressCallback

# A rollback point keeps the cache's state in memory up to this size, on disk beyond it (a
# full 32K context of the default model is ~384 MiB: twice that in RAM for a moment could
# push a machine the planner sized to fit into swap). Saving costs ~2 ms per 1,000 tokens.
ROLLBACK_IN_MEMORY_BYTES = 64 * 2**20


@dataclass
class Stage:
    """A long piece of work being reported: how much of `total` is done."""

    stage: str
    total: int
    unit: str
    report_to: ProgressCallback | None
    started: float = field(default_factory=time.perf_counter)
    done: int = 0

    def expect(self, n: int) -> None:
        self.total += max(0, n)

    def advance(self, n: int) -> None:
        self.done += n
        self.report()

    def report(self) -> None:
        if self.report_to is not None:
            self.total = max(self.total, self.done)
            seconds = time.perf_counter() - self.started
            self.report_to(Progress(self.stage, self.done, self.total, self.unit, seconds))


@dataclass
class CacheMark:
    """The cache, its window and its ownership record before a message (see KvContext.rewind)."""

    n_past: int
    tokens: list[int]
    ledger: LedgerMark
    window: Any  # the sink window's checkpoint, None without one
    state: bytes | None = None
    state_file: Path | None = None

    def drop_state(self) -> None:
        self.state = None
        if self.state_file is not None:
            with contextlib.suppress(OSError):
                self.state_file.unlink()
            self.state_file = None


def keep_state_if_evicting(engine: Engine, mark: CacheMark, evicting: bool) -> None:
    """Before a message that will evict, keep the cache's state in `mark`: in memory up to
    ROLLBACK_IN_MEMORY_BYTES, else in a temporary file (a remote engine keeps none: its
    rollback re-decodes the mirror, which costs nothing there)."""
    if not mark.tokens or not evicting:
        return
    per_token = engine.kv_allocation().total_bytes / max(engine.n_ctx, 1)
    try:
        if per_token * len(mark.tokens) <= ROLLBACK_IN_MEMORY_BYTES:
            mark.state = engine.state_get()
        else:
            fd, name = tempfile.mkstemp(prefix="rollback-", suffix=".kv")
            os.close(fd)
            mark.state_file = Path(name)
            engine.state_save(mark.state_file)
    except (EngineFailed, OSError):
        mark.drop_state()
