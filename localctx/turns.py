"""What a turn keeps so that it can be stopped, taken back and reported (used by the session).

- `Stage`: a long step being reported (a prefill in tokens, summaries in segments).
- `Rollback`: everything a message's prefill changes, as it was before it, including the
  cache's state when the message will evict (the evicted cells could otherwise only come back
  by reading them again: seconds per 1,000 tokens); `keep_state_if_evicting` saves it.
- `Exchange`: the newest user message and its reply (regenerate, edit).
- `TurnControl`: the Session's methods built on these — `supervised(cancel, progress)`,
  `retract_last_turn`, `stream_totals`, and the rollback, stage and stale-context internals.

Must not: decode, render, or import llama_cpp / textual.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localctx.engine.base import ChatMessage, Engine
from localctx.errors import EngineFailed
from localctx.memory.context import ContextLedger, LedgerMark
from localctx.memory.retrieval import RecalledItem
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
class Rollback:
    """Everything a message's prefill changes, as it was before it (see `_rewind`)."""

    n_past: int
    tokens: list[int]
    ledger: LedgerMark
    window: Any  # the sink window's checkpoint, None without one
    messages: int
    last_recall: list[RecalledItem]
    recalled_seq: int
    stored: list[int] = field(default_factory=list)  # store ids to discard
    state: bytes | None = None
    state_file: Path | None = None

    def drop_state(self) -> None:
        self.state = None
        if self.state_file is not None:
            with contextlib.suppress(OSError):
                self.state_file.unlink()
            self.state_file = None


@dataclass(frozen=True)
class Exchange:
    """The newest exchange: the user's message, its reply, and what ended the cache before."""

    user_id: int
    reply_id: int
    recalled_owner: int | None
    before: ChatMessage | None  # what ended the cache before the turn
    before_open: bool


def keep_state_if_evicting(engine: Engine, mark: Rollback, evicting: bool) -> None:
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


class TurnControl:
    """The Session's stop / report / take-back half (a mixin: it works on the session's
    engine, sink window, ledger and store). Kept apart from localctx.session, which holds the
    turn itself: what is added here to stop and undo work does not touch that code."""

    engine: Engine
    policy: Any
    store: Any
    messages: list[ChatMessage]
    last_recall: list[RecalledItem]
    notices: list[str]
    _ledger: ContextLedger
    _recalled_seq: int
    _evicted_message_ids: set[int]
    _started: bool
    _sid: int

    if TYPE_CHECKING:  # provided by Session

        def prepare_turn(self, *, summarize: bool = True) -> None: ...
        def _collect_evictions(self) -> None: ...

    # Set for one unit of work by `supervised` (the TUI's workers, `ask`).
    _cancel: threading.Event | None = None
    _progress: ProgressCallback | None = None
    _stage_now: Stage | None = None
    # Counters of the sink windows a rebuild replaced, so the gauge counts over the session.
    _retired_evicted_tokens = 0
    _retired_evictions = 0
    _last_turn: Exchange | None = None

    @contextlib.contextmanager
    def supervised(
        self,
        cancel: threading.Event | None = None,
        progress: ProgressCallback | None = None,
    ) -> Iterator[None]:
        """Within this block any work (a turn, summaries, /remember, /forget, starting the
        context) stops when `cancel` is set, and long work reports to `progress`."""
        saved = self._cancel, self._progress
        self._cancel, self._progress = cancel, progress
        try:
            with self.engine.cancellable(cancel):
                yield
        finally:
            self._cancel, self._progress = saved

    def retract_last_turn(self) -> str | None:
        """Take back the newest exchange (the user's message and the reply to it), to ask it
        again or edit it: its tokens leave the end of the cache, its messages leave the store
        and `messages`. Text the turn pushed out of the window stays in memory as evicted
        segments (putting it back would mean reading it again). Returns the user's text, or
        None when there is no exchange to take back."""
        turn = self._last_turn or self._stored_last_turn()
        if turn is None:
            return None
        if not self._started:
            self.prepare_turn(summarize=False)
        mine = {turn.user_id, turn.reply_id}
        if turn.recalled_owner is not None:
            mine.add(turn.recalled_owner)
        runs = self._ledger.tail(self.engine.tokens)
        n = 0
        while runs and runs[-1][0] in mine:
            n += len(runs.pop()[2])
        if n:
            with self.engine.cancellable(None):
                self.engine.kv_remove(self.engine.n_past - n, -1)
        only_pinned = self.engine.cells_used <= self._ledger.pinned_len
        before = None if only_pinned else turn.before
        self._ledger.drop_tail(n, before, bool(before) and turn.before_open)
        text = None
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i]["role"] == "user":
                text = self.messages[i]["content"]
                del self.messages[i:]
                break
        if self.store is not None:
            for mid in (turn.user_id, turn.reply_id):
                self.store.discard_message(mid)
        self._evicted_message_ids -= mine
        self.last_recall = []
        self._last_turn = None
        return text

    def stream_totals(self) -> tuple[int, int]:
        """(tokens seen, evictions) over this session: a rebuild starts a new sink window
        whose own counters start at 0. Safe from another thread (the gauge)."""
        policy = self.policy
        if policy is None:
            return self._retired_evicted_tokens + self.engine.n_past, self._retired_evictions
        stats = policy.stats()
        return (
            self._retired_evicted_tokens + stats.tokens_seen,
            self._retired_evictions + stats.evictions,
        )

    # ------------------------------------------------------------------ internals
    @contextlib.contextmanager
    def _stage(self, stage: str, total: int, unit: str = "tokens") -> Iterator[Stage]:
        """Report the work inside as one stage; a stage inside another adds to the outer."""
        outer = self._stage_now
        if outer is not None:
            outer.expect(total)
            yield outer
            return
        current = Stage(stage, total, unit, self._progress)
        self._stage_now = current
        try:
            current.report()
            yield current
        finally:
            self._stage_now = None
            if unit == "tokens" and current.done > 1:  # the turn's prefill figure, whole
                self.engine.stats.prefill_tokens = current.done
                self.engine.stats.prefill_seconds = time.perf_counter() - current.started

    def _expect(self, n: int) -> None:
        if self._stage_now is not None:
            self._stage_now.expect(n)

    def _mark(self) -> Rollback:
        checkpoint = getattr(self.policy, "checkpoint", None)
        return Rollback(
            n_past=self.engine.n_past,
            tokens=self.engine.tokens,
            ledger=self._ledger.mark(),
            window=checkpoint() if checkpoint is not None else None,
            messages=len(self.messages),
            last_recall=list(self.last_recall),
            recalled_seq=self._recalled_seq,
        )

    def _keep_state_if_evicting(self, mark: Rollback, n_new: int) -> None:
        room = self.policy.window if self.policy is not None else self.engine.n_ctx
        keep_state_if_evicting(self.engine, mark, self.engine.cells_used + n_new > room)

    def _rewind(self, mark: Rollback) -> None:
        """Put the cache, the window, the ledger and the store back to `mark` (a message
        whose prefill was stopped). Never stopped itself."""
        with self.engine.cancellable(None):
            window = mark.window
            evicted = window is not None and self.policy.stats().evictions != window.evictions
            if not evicted:
                self.engine.kv_remove(mark.n_past, -1)
            elif mark.state is not None:
                self.engine.state_set(mark.state, mark.tokens)
            elif mark.state_file is not None:
                self.engine.state_load(mark.state_file)
            else:
                self.engine.kv_clear()
                self.engine.decode(mark.tokens)
            if window is not None:
                self.policy.restore(window)
        self._ledger.rewind(mark.ledger)
        del self.messages[mark.messages :]
        self.last_recall, self._recalled_seq = mark.last_recall, mark.recalled_seq
        if self.store is not None:
            for mid in mark.stored:
                self.store.discard_message(mid)

    def _go_stale(self) -> None:
        """A stopped rebuild: drop the half-built context; the next turn starts it again from
        the store (snapshot or replayed history), and no snapshot of it is ever saved."""
        with self.engine.cancellable(None):
            self.engine.kv_clear()
        self._collect_evictions()
        self._retire_policy()
        self.policy = None
        self._ledger = ContextLedger()
        self._started = False
        self.notices.append("the context was stopped while being built; the next message builds it")

    def _retire_policy(self) -> None:
        if self.policy is not None:
            stats = self.policy.stats()
            self._retired_evicted_tokens += stats.evicted_tokens
            self._retired_evictions += stats.evictions

    def _stored_last_turn(self) -> Exchange | None:
        """The newest exchange of a resumed session, read from the store."""
        if self.store is None:
            return None
        rows = self.store.messages(self._sid)
        users = [i for i, row in enumerate(rows) if row[1] == "user"]
        if not users:
            return None
        at = users[-1]
        replies = [row[0] for row in rows[at + 1 :] if row[1] == "assistant"]
        before = rows[at - 1] if at else None
        previous: ChatMessage | None = (
            {"role": before[1], "content": before[2]} if before is not None else None
        )
        is_reply = previous is not None and previous["role"] == "assistant"
        return Exchange(rows[at][0], replies[0] if replies else -1, None, previous, is_reply)
