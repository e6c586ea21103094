"""One conversation without a UI, as a turn pipeline: recall -> append -> generate -> record.
Used by `ask`, the TUI and `serve`, which read a turn as typed events (`turn`).

What the KV cache holds and every change to its layout belongs to `context.KvContext` (the
sink window, the ownership record, the pinned region, snapshots, lending the cache to the
summarizer). A Session is assembled from parts over one state (`session_base.SessionBase`):
this module's pipeline, the context's start, resume and save (`lifecycle`), the memory tiers
at work (`tiers`: recall before the question, evicted segments to the store, summaries between
turns) and edits of the history (`history`: regenerate, retract, rewind, /remember, /forget).

Long work can be stopped and watched: within `supervised(cancel, progress)` (or with
`stream(..., cancel=)`) setting the event stops a prefill within one batch, a reply within one
token and the summaries between (and inside) segments; a message whose prefill was stopped is
taken back whole (cells, window bookkeeping, ledger, store), so the session is exactly as
before it. Prefills report `Progress` in tokens after every batch, summaries in segments.

Must not: render anything, or import llama_cpp / textual. `Session(engine)` alone keeps the
old behaviour (no stores, no disk); `Session.open(...)` wires the memory tiers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

from localctx.engine.base import ChatMessage, Engine, Sampling, TokenEvent
from localctx.errors import Cancelled, LocalctxError
from localctx.history import HistoryEdits
from localctx.lifecycle import ContextLifecycle
from localctx.memory import retrieval
from localctx.memory.locks import SessionLock
from localctx.memory.recall import RecallStore
from localctx.memory.snapshots import SnapshotStore
from localctx.session_base import DEFAULT_SYSTEM
from localctx.tiers import MemoryTiers
from localctx.turns import (
    PLAIN_STOPS,
    EvictionReport,
    Exchange,
    Recalled,
    TokensGenerated,
    TurnEvent,
    TurnFinished,
    TurnMark,
    TurnResult,
    cut_index,
    fresh_name,
    token_view,
)

__all__ = ["DEFAULT_SYSTEM", "PLAIN_STOPS", "EvictionReport", "Session", "TurnResult"]


class Session(HistoryEdits, ContextLifecycle, MemoryTiers):
    """A conversation over a model and (with `open`) the memory tiers; see the module."""

    @classmethod
    def open(
        cls,
        engine: Engine,
        *,
        name: str | None = None,
        window: int | None = None,
        repo: Any = None,
        system_prompt: str = DEFAULT_SYSTEM,
        **options: Any,
    ) -> Session:
        """A session over the on-disk stores; `name` resumes one (messages, summary, KV).

        `repo` is a path (ingested on first use, its digest pinned and its chunks recalled)
        or an already attached RepoContext; `dense` ("auto", "on", "off") is its dense pass.
        """
        dense = options.pop("dense", "auto")
        # A named session is one process's at a time (memory.locks); a fresh name is unique.
        lock = SessionLock.acquire(name) if name is not None else None
        try:
            if isinstance(repo, str | Path):
                from localctx.ingest import attach

                count = lambda text: len(engine.tokenize(text))  # noqa: E731
                repo = attach(repo, token_counter=count, dense=dense)
                options.setdefault("owns_repo", True)
            store = RecallStore()
            session_name = name or fresh_name("ask" if options.get("ephemeral") else "session")
            session = cls(
                engine,
                system_prompt,
                store=store,
                snapshots=SnapshotStore(),
                name=session_name,
                window=window,
                repo=repo,
                **options,
            )
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        session._lock, session._owns_store = lock, True
        return session

    # ------------------------------------------------------------------ a turn
    def turn(
        self,
        user_text: str | None,
        sampling: Sampling | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> Generator[TurnEvent, None, None]:
        """One turn as typed events: what was recalled (before the question is read), the
        reply's pieces, the segments evicted and summaries written meanwhile, and last the
        turn's figures. `user_text` None asks for a new reply to the newest message (see
        `regenerate`). Stops and failures behave as in `stream`."""
        sampling = sampling or Sampling()
        cancel = cancel if cancel is not None else self._cancel
        self._events.clear()
        with self.engine.cancellable(cancel):
            if user_text is None:
                yield from self._regenerate(sampling, cancel)
            else:
                yield from self._stream(user_text, sampling, cancel)
        yield from self._drained()
        yield TurnFinished(self.result())

    def _drained(self) -> Iterator[TurnEvent]:
        """The memory tiers' events since the last token (evictions, summaries)."""
        while self._events:
            yield self._events.pop(0)

    def stream(
        self,
        user_text: str,
        sampling: Sampling | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> Iterator[TokenEvent]:
        """Recall, append the user's message, and stream the reply (make_room evicts).

        A cancel while the message is read (`cancel`, else the event `supervised` gave)
        takes the message back whole and raises Cancelled; a cancel during the reply ends it
        (stop_reason "cancelled") and the partial reply stays, as a reply.

        The turn is stored whole or not at all: its messages are written open at the start,
        the segments evicted meanwhile join it as they are written, and the answer closes it;
        a failure on the way (a full disk, a broken engine) takes it back (`_abandon_turn`).
        """
        return token_view(self.turn(user_text, sampling, cancel=cancel))

    def regenerate(
        self, sampling: Sampling | None = None, *, cancel: threading.Event | None = None
    ) -> Iterator[TokenEvent]:
        """A new reply to the newest message from the same context, as tokens (see
        `HistoryEdits._regenerate`; `turn(None)` gives its events)."""
        return token_view(self.turn(None, sampling, cancel=cancel))

    def _stream(
        self, user_text: str, sampling: Sampling, cancel: threading.Event | None
    ) -> Iterator[TurnEvent]:
        self.prepare_turn()
        ctx = self.context
        cells_before = self.engine.cells_used
        shown, seq = self.last_recall, self._recalled_seq
        self.last_recall = self._recall(user_text)
        yield Recalled(tuple(self.last_recall), self.last_expansion)
        # After recall: whatever it does, the rollback starts here.
        before = TurnMark(ctx.mark(), len(self.messages), shown, seq)
        user: ChatMessage = {"role": "user", "content": user_text}
        parts: list[tuple[ChatMessage, int, str]] = []
        if self.last_recall:
            self._recalled_seq += 1
            # Which stored items this recalled block holds, so a /forget can take it out.
            self._recalled_ids[-self._recalled_seq] = {item.id for item in self.last_recall}
            text = retrieval.recalled_text(self.last_recall)
            parts.append(({"role": "system", "content": text}, -self._recalled_seq, "recalled"))
        increments = ctx.increments([m for m, _, _ in parts] + [user], generation=True)
        self.messages.append({"role": "user", "content": user_text})
        uid, aid = self._begin_turn(("user", user_text), ("assistant", ""))
        parts.append((user, uid, "message"))
        try:
            n_new = sum(len(tokens) for tokens in increments)
            with ctx.stage("reading the prompt", n_new):
                ctx.keep_state_if_evicting(before.cache, n_new)
                for (message, owner, kind), tokens in zip(parts, increments, strict=True):
                    ctx.append_tokens(tokens, message, owner, kind)
        except Cancelled:
            self._take_back(before)  # the cache, the window, the ledger, the messages
            if self.store is not None:
                self.store.discard_turn(self._sid)  # its rows, and segments it evicted
            raise
        except Exception as exc:
            raise self._abandon_turn(exc) from None
        finally:
            before.cache.drop_state()
        self._last_prompt_tokens = self.engine.cells_used
        self._last_reused = min(cells_before, self._last_prompt_tokens)
        recalled_owner = -self._recalled_seq if len(parts) > 1 else None
        mark = before.cache.ledger
        turn = Exchange(uid, aid, recalled_owner, mark.last, mark.last_open)
        yield from self._reply(turn, sampling, cancel)

    def _take_back(self, mark: TurnMark) -> None:
        """A message whose prefill was stopped: the cache, the window, the record and the
        session's messages and recall exactly as before it."""
        self.context.rewind(mark.cache)
        del self.messages[mark.messages :]
        self.last_recall, self._recalled_seq = mark.last_recall, mark.recalled_seq

    def _reply(
        self, turn: Exchange, sampling: Sampling, cancel: threading.Event | None
    ) -> Iterator[TurnEvent]:
        """Generate and record the reply to `turn.user_id`, whose message ends the cache; its
        row is `turn.reply_id` (opened with the turn), or a new open turn of its own."""
        if turn.reply_id > 0:
            aid = turn.reply_id
        else:
            (aid,) = self._begin_turn(("assistant", ""))
            self._turn_start = len(self.messages)  # the question before it stays
        self.context.begin(aid, "message")
        pieces: list[str] = []
        generated: list[int] = []
        # A base model on the plain transcript has no end-of-turn token: it goes on to write
        # the user's next line. Stop there, and take those tokens back out of the cache.
        plain = self.engine.chat_template_source.startswith("none")
        stops = (PLAIN_STOPS if plain else ()) + tuple(sampling.stop)
        failure: Exception | None = None
        try:
            room = self.context.make_room
            for event in self.engine.generate(sampling, cancel=cancel, make_room=room):
                pieces.append(event.text)
                generated.append(event.token)
                if stops and any(stop in "".join(pieces[-8:]) for stop in stops):
                    break
                yield from self._drained()
                yield TokensGenerated(event)
        except Exception as exc:
            failure = exc
        finally:
            # Stopping the engine's generator leaves its last token undecoded.
            cached = len(generated) - (self.engine.tokens[-1:] != generated[-1:])
            keep = min(cached, cut_index(stops, pieces) if stops else cached)
            if cached > keep:
                self.engine.kv_remove(self.engine.n_past - (cached - keep), -1)
            generated, pieces = generated[:keep], pieces[:keep]
            raw = "".join(pieces)
            self.context.record_reply(generated, aid, raw)
            self.messages.append({"role": "assistant", "content": raw.strip()})
            self._last_turn = Exchange(
                turn.user_id, aid, turn.recalled_owner, turn.before, turn.before_open
            )
            if failure is None:
                self._commit_turn({aid: raw})
        if failure is not None:
            raise self._abandon_turn(failure) from None

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
        return self.result()

    def result(self) -> TurnResult:
        """The newest turn's figures (after `stream` or `regenerate` finished)."""
        stats = self.engine.stats
        return TurnResult(
            answer=self.messages[-1]["content"] if self.messages else "",
            prompt_tokens=self._last_prompt_tokens,
            completion_tokens=stats.decode_tokens,
            prefill_tps=stats.prefill_tps,
            decode_tps=stats.decode_tps,
            reused_tokens=self._last_reused,
            stop_reason=stats.stop_reason,
            recalled=list(self.last_recall),
        )

    def feed(self, role: str, text: str) -> None:
        """Append a message without generating (imports, benchmarks): stored and decoded."""
        self.prepare_turn(summarize=False)
        self.messages.append({"role": role, "content": text})
        (mid,) = self._begin_turn((role, text))
        try:
            self.context.append({"role": role, "content": text}, mid, "message")
        except Exception as exc:
            raise self._abandon_turn(exc) from None
        self._commit_turn({})

    def prepare_turn(self, *, summarize: bool = True) -> None:
        """Between turns: start or resume the context, write pending summaries, refresh the
        pinned region when the running summary changed enough to be worth a re-decode."""
        if not self.context.started:
            self._start()
        if summarize and self.summarize_per_turn:
            self.summarize_pending(self.summarize_per_turn)
        # At most one re-decode of the window per window of evicted tokens: that bounds the
        # extra prefill to ~1x of what the conversation itself decoded.
        ctx = self.context
        if ctx.pinned_dirty and ctx.evicted_since_rebuild >= self.window:
            self._rebuild()

    # ------------------------------------------------------------------ the turn's rows
    def _begin_turn(self, *messages: tuple[str, str]) -> list[int]:
        """Store the turn's messages, open (RecallStore.begin_turn); without a store, ids."""
        self._turn_start = len(self.messages) - 1
        if self.store is None:  # ids stay positive: negative ones mark recalled snippets
            self._local_ids += len(messages)
            return list(range(self._local_ids - len(messages) + 1, self._local_ids + 1))
        try:
            return self.store.begin_turn(self._sid, messages)
        except Exception:
            del self.messages[self._turn_start :]
            raise

    def _commit_turn(self, contents: dict[int, str]) -> None:
        """Close the turn in one transaction, after the segments it evicted are written; if
        that fails (a full disk), the turn is taken back like any other failed one."""
        try:
            self.context.collect_evictions()
            if self.store is not None:
                self.store.commit_turn(self._sid, {m: c for m, c in contents.items() if m > 0})
        except Exception as exc:
            raise self._abandon_turn(exc) from None

    def _abandon_turn(self, failure: Exception) -> Exception:
        """Take a failed turn back whole: its rows, and the context (the next turn starts
        again from the store and the last snapshot, which both predate it). Returns the
        error to raise, saying what became of the turn. On a disk still too full for the
        take-back itself, the rows stay marked open and the session's next start takes
        them back before it reads anything."""
        if self.store is None:
            return failure
        del self.messages[self._turn_start :]
        self.context.abandon()  # the cache holds the failed turn; close() saves no snapshot
        outcome = "nothing of this turn was stored"
        try:
            self.store.discard_turn(self._sid)
        except LocalctxError:
            outcome = "this turn is taken back when the session next starts"
        if isinstance(failure, LocalctxError):
            return type(failure)(f"{failure}; {outcome}", failure.exit_code)
        return failure
