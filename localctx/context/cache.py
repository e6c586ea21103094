"""What the KV cache holds, and every operation that changes its layout.

    [sinks | pinned: system prompt, core memory, repo digest, running summary |
     recalled snippets | rolling window of messages | free]

`KvContext` owns the engine handle's cache for one conversation: the window policy (the sink
window or a scored one, `context.window`), the ownership record (`context.ledger`), the pinned
region (decoded fresh, or its stable prefix restored from a snapshot), resume from and save to a
session snapshot, appending a message as its template increment (re-prefilling a 1,000-token
history costs 4-8 s on 2 cores; appending costs only the new tokens), rebuilding after the
pinned region changed, taking a stopped message back (`mark` / `rewind`), and lending the cache
to the summarizer and giving it back exactly (~2 ms per 1,000 tokens).

What the window evicts is handed to `on_segment` (the session stores it) the moment it is
evicted, with the conversation's part of it and the stored message ids it held.

Must not: touch a store (the session does), render, or import llama_cpp / textual.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from localctx.context import layout
from localctx.context.ledger import ContextLedger
from localctx.context.pinned import PinnedParts, identity_for
from localctx.context.rollback import CacheMark, Stage, keep_state_if_evicting
from localctx.engine.base import ChatMessage, Engine, GenerationStats
from localctx.errors import Cancelled, EngineFailed, LocalctxError
from localctx.kv.segment import EvictedSegment
from localctx.memory.snapshots import SnapshotStore
from localctx.progress import ProgressCallback

PINNED_ID = 0  # message id the pinned region is attributed to
# What the session does with an evicted segment: (segment, its conversation text, message ids).
SegmentSink = Callable[[EvictedSegment, str, list[int]], None]
LentCache = tuple[list[int], bytes, GenerationStats]


class KvContext:
    def __init__(
        self,
        engine: Engine,
        *,
        window: int,
        n_sink: int,
        policy_factory: Callable[..., Any],
        snapshots: SnapshotStore | None,
        notices: list[str],
    ) -> None:
        self.engine = engine
        self.window = window
        self.n_sink = n_sink
        self.snapshots = snapshots
        self.notices = notices  # shared with the session, for the UI to show once
        self.on_segment: SegmentSink | None = None
        self.policy: Any = None
        self.ledger = ContextLedger()
        self.started = False
        self.pinned_summary = ""  # the running summary the cached pinned region holds
        self.pinned_dirty = False
        self.evicted_since_rebuild = 0
        self.eviction_count = 0  # segments evicted (the window's own count restarts when a
        # new pinned region rebuilds the context)
        self.progress: ProgressCallback | None = None
        self.stage_now: Stage | None = None
        self._factory = policy_factory
        # Counters of the sink windows a rebuild replaced, so the gauge counts over the session.
        self._retired_evicted_tokens = 0
        self._retired_evictions = 0

    # ------------------------------------------------------------------ reading
    @property
    def pinned_len(self) -> int:
        return self.ledger.pinned_len

    def identity(self) -> Any:
        return identity_for(self.engine, self.window)

    def count(self, text: str) -> int:
        return len(self.engine.tokenize(text))

    def owners_in_cache(self) -> set[int]:
        return self.ledger.owners_in_cache(self.engine.cells_used)

    def tail(self) -> list[tuple[int, str, list[int]]]:
        return self.ledger.tail(self.engine.tokens)

    def stream_totals(self) -> tuple[int, int]:
        """(tokens seen, evictions) over this context's life: a rebuild starts a new sink
        window whose own counters start at 0. Safe from another thread (the gauge)."""
        policy = self.policy
        if policy is None:
            return self._retired_evicted_tokens + self.engine.n_past, self._retired_evictions
        stats = policy.stats()
        return (
            self._retired_evicted_tokens + stats.tokens_seen,
            self._retired_evictions + stats.evictions,
        )

    # ------------------------------------------------------------------ reporting
    @contextlib.contextmanager
    def stage(self, stage: str, total: int, unit: str = "tokens") -> Iterator[Stage]:
        """Report the work inside as one stage; a stage inside another adds to the outer."""
        outer = self.stage_now
        if outer is not None:
            outer.expect(total)
            yield outer
            return
        current = Stage(stage, total, unit, self.progress)
        self.stage_now = current
        try:
            current.report()
            yield current
        finally:
            self.stage_now = None
            if unit == "tokens" and current.done > 1:  # the turn's prefill figure, whole
                self.engine.stats.prefill_tokens = current.done
                self.engine.stats.prefill_seconds = time.perf_counter() - current.started

    def expect(self, n: int) -> None:
        if self.stage_now is not None:
            self.stage_now.expect(n)

    # ------------------------------------------------------------------ appending
    def begin(self, owner: int, kind: str) -> None:
        if self.policy is not None:
            self.policy.begin_message(owner, kind=kind)

    def decode(self, tokens: list[int]) -> None:
        """Through the window when there is one: it also splits a long text into batches that
        fit beside the sinks and the pinned region. Within a reported stage, one batch at a
        time, each reported as it lands."""
        if not tokens:
            return
        decode = self.policy.decode if self.policy is not None else self.engine.decode
        stage, step = self.stage_now, self.engine.settings.n_batch
        if stage is None:
            decode(tokens)
            return
        for i in range(0, len(tokens), step):
            chunk = tokens[i : i + step]
            decode(chunk)
            stage.advance(len(chunk))

    def make_room(self, n: int) -> None:
        if self.policy is not None:
            self.policy.make_room(n)

    def increment(self, message: ChatMessage, *, generation: bool = False) -> list[int]:
        """The tokens `message` adds after what ends the cache now (its template increment)."""
        return self.increments([message], generation=generation)[0]

    def increments(
        self, messages: Sequence[ChatMessage], *, generation: bool = False
    ) -> list[list[int]]:
        """The increments of several messages in a row, counted before any is decoded (a
        prefill's progress has its total from the start); `generation` opens a reply after
        the last."""
        fmt = self.engine.format_chat
        last, last_open = self.ledger.last, self.ledger.last_open
        out: list[list[int]] = []
        for i, message in enumerate(messages):
            gen = generation and i == len(messages) - 1
            text = layout.continuation(fmt, last, [message], generation=gen, last_open=last_open)
            out.append(self.engine.tokenize(text))
            last, last_open = message, False
        return out

    def append(
        self, message: ChatMessage, owner: int, kind: str, *, generation: bool = False
    ) -> None:
        self.append_tokens(self.increment(message, generation=generation), message, owner, kind)

    def append_tokens(self, tokens: list[int], message: ChatMessage, owner: int, kind: str) -> None:
        self.begin(owner, kind)
        self.decode(tokens)
        self.ledger.add(tokens, owner, kind)
        self.ledger.last = message
        self.ledger.last_open = False

    def record_reply(self, tokens: list[int], owner: int, raw: str) -> None:
        """The generated reply's tokens (decoded by the engine's generate) join the record."""
        self.ledger.add(tokens, owner)
        self.ledger.last = {"role": "assistant", "content": raw}
        self.ledger.last_open = True

    def drop_tail(self, n: int, last: ChatMessage | None, last_open: bool) -> None:
        """Take the newest `n` tokens out of the cache and the record; `last` ends it now."""
        if n > 0:
            with self.engine.cancellable(None):
                self.engine.kv_remove(self.engine.n_past - n, -1)
        self.ledger.drop_tail(n, last, last_open)

    # ------------------------------------------------------------------ evictions
    def collect_evictions(self) -> None:
        """Hand every segment the window evicted to `on_segment` (copies of recalled snippets
        are not handed on); the record forgets a scored policy's scattered cells."""
        if self.policy is None:
            return
        for seg in self.policy.queue.drain():
            self.evicted_since_rebuild += seg.n_tokens
            self.eviction_count += 1
            kept = self.ledger.conversation_part(seg, self.engine.detokenize)
            if seg.runs:  # scattered cells left the cache: the record keeps what it holds
                self.ledger.forget_runs(seg.stream_runs())
            if kept is not None and self.on_segment is not None:
                self.on_segment(seg, kept[0], kept[1])

    def drop_evictions(self) -> None:
        """Segments of a failed turn: never handed on."""
        if self.policy is not None:
            self.policy.queue.drain()

    # ------------------------------------------------------------------ the policy
    def _new_policy(self) -> Any:
        """The sink window; each segment it evicts is collected the moment it is evicted."""
        policy = self._factory(self.engine, window=self.window, n_sink=self.n_sink)
        queue = getattr(policy, "queue", None)
        # Collected as evicted: stored at once with a store; without one the ledger still
        # follows a scored policy's scattered evictions before anything reads the tail.
        if queue is not None and hasattr(queue, "listen"):
            queue.listen(self.collect_evictions)
        return policy

    def _retire_policy(self) -> None:
        if self.policy is not None:
            stats = self.policy.stats()
            self._retired_evicted_tokens += stats.evicted_tokens
            self._retired_evictions += stats.evictions

    def _fresh_policy(self, pinned_len: int) -> None:
        self._retire_policy()
        self.policy = self._new_policy()
        self.ledger = ContextLedger(pinned_len=pinned_len)

    def _set_pinned_end(self, pos: int) -> None:
        if self.policy is not None:
            self.policy.set_pinned_end(pos)

    # ------------------------------------------------------------------ building
    def decode_pinned(self, parts: PinnedParts, summary: str, core_ids: list[int]) -> None:
        """Fresh cache: restore the stable pinned prefix from a snapshot or decode it."""
        self.pinned_summary = summary
        self.engine.kv_clear()
        self._fresh_policy(len(parts.tokens))
        restored = False
        if self.snapshots is not None and parts.stable_worth_saving:
            snap = self.snapshots.find(self.identity(), parts.stable)
            if snap is not None:
                with contextlib.suppress(EngineFailed):
                    self.engine.state_set(snap.data, snap.tokens)
                    restored = True
        self.begin(PINNED_ID, "message")
        self.expect(len(parts.rest) + (0 if restored else len(parts.stable)))
        if not restored:
            self.decode(parts.stable)
            if self.snapshots is not None and parts.stable_worth_saving:
                meta = {"kind": "prefix", "core_ids": core_ids}
                self.snapshots.save(self.identity(), parts.stable, self.engine.state_get(), meta)
        self.decode(parts.rest)
        self._set_pinned_end(len(parts.tokens))
        self.pinned_dirty = False
        self.evicted_since_rebuild = 0

    def resume(
        self,
        key: str,
        last_message_id: int,
        running_summary: str,
        pinned_for: Callable[[str], PinnedParts],
    ) -> bool:
        """Put back the session snapshot `key` when it holds the stored conversation (up to
        `last_message_id`) and its pinned region is `pinned_for(the summary it was decoded
        with)`; False, with a notice, when it cannot be used (then the caller recomputes)."""
        if self.snapshots is None:
            return False
        snap = self.snapshots.load(key, self.identity(), missing_ok=False)
        self.notices.extend(self.snapshots.notices)
        self.snapshots.notices.clear()
        if snap is None:
            return False
        if snap.meta.get("last_message_id", last_message_id) != last_message_id:
            self.notices.append(  # older snapshots did not record the id
                "session snapshot does not hold the stored conversation (it was saved before "
                "the last turns, or a turn was taken back); recomputing"
            )
            return False
        # The pinned region as it was decoded: a summary written after it (between turns)
        # enters at the next rebuild, as it would have without the restart.
        pinned_summary = snap.meta.get("pinned_summary", running_summary)
        pinned_summary = pinned_summary if isinstance(pinned_summary, str) else ""
        parts = pinned_for(pinned_summary)
        if snap.tokens[: len(parts.tokens)] != parts.tokens:
            self.notices.append("session snapshot predates a memory change; recomputing")
            return False
        try:
            self.engine.state_set(snap.data, snap.tokens)
        except EngineFailed as exc:
            self.notices.append(f"session snapshot rejected ({exc}); recomputing")
            return False
        self._fresh_policy(len(parts.tokens))
        self.ledger = ContextLedger.from_snapshot(snap.meta, snap.tokens, len(parts.tokens))
        self._set_pinned_end(len(parts.tokens))
        self.pinned_summary = pinned_summary
        self.pinned_dirty = pinned_summary != running_summary
        return True

    def replay(self, rows: Sequence[tuple[int, str, str]]) -> None:
        """Re-decode the newest stored messages (id, role, content) that fit half the window
        after the pinned region (a resume without a usable snapshot)."""
        budget = max(0, (self.window - self.ledger.pinned_len) // 2)
        chosen: list[tuple[int, str, str]] = []
        used = 0
        for row in reversed(rows):
            n = self.count(row[2]) + 8
            if used + n > budget:
                break
            chosen.append(row)
            used += n
        self.expect(used)
        for mid, role, content in reversed(chosen):
            self.append({"role": role, "content": content}, mid, "message")

    def rebuild(
        self, parts: PinnedParts, summary: str, core_ids: list[int], drop: set[int] | None
    ) -> None:
        """New pinned region (summary or core changed): re-decode it, then replay the window
        tail that was in the cache (minus `drop`ped owners). Costs one window of prefill."""
        self.collect_evictions()  # first: a scattered eviction changes what the tail is
        tail = self.tail()
        last, last_open = self.ledger.last, self.ledger.last_open
        kept = [(o, k, t) for o, k, t in tail if not (drop and o in drop)]
        try:
            with self.stage("rebuilding context", sum(len(t) for _, _, t in kept)):
                self.decode_pinned(parts, summary, core_ids)
                for owner, kind, tokens in kept:
                    self.begin(owner, kind)
                    self.decode(tokens)
                    self.ledger.add(tokens, owner, kind)
        except Cancelled:  # half a context is no context: start it again from memory
            self.go_stale()
            raise
        self.ledger.last, self.ledger.last_open = last, last_open
        self.collect_evictions()

    def go_stale(self) -> None:
        """A stopped build: drop the half-built context; the next turn starts it again from
        the store (snapshot or replayed history), and no snapshot of it is ever saved."""
        with self.engine.cancellable(None):
            self.engine.kv_clear()
        self.collect_evictions()
        self._retire_policy()
        self.policy = None
        self.ledger = ContextLedger()
        self.started = False
        self.notices.append("the context was stopped while being built; the next message builds it")

    def abandon(self) -> None:
        """The cache holds a failed turn: the next turn starts from the store; no snapshot."""
        self.started = False
        self.drop_evictions()

    # ------------------------------------------------------------------ taking back
    def mark(self) -> CacheMark:
        checkpoint = getattr(self.policy, "checkpoint", None)
        return CacheMark(
            n_past=self.engine.n_past,
            tokens=self.engine.tokens,
            ledger=self.ledger.mark(),
            window=checkpoint() if checkpoint is not None else None,
        )

    def keep_state_if_evicting(self, mark: CacheMark, n_new: int) -> None:
        room = self.policy.window if self.policy is not None else self.engine.n_ctx
        keep_state_if_evicting(self.engine, mark, self.engine.cells_used + n_new > room)

    def rewind(self, mark: CacheMark) -> None:
        """Put the cache, the window and the record back to `mark` (a message whose prefill
        was stopped). Never stopped itself."""
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
        self.ledger.rewind(mark.ledger)

    def cut_after(
        self, dropped: set[int], kept_last: tuple[int, str, str] | None
    ) -> tuple[int, ChatMessage | None, bool] | None:
        """Where to cut the cache so that it ends exactly after the kept message `kept_last`
        (its id, role, content) once the owners `dropped` leave, and what then ends it; None
        when the cache cannot say (then rebuild)."""
        pinned = self.ledger.pinned_len
        held = self.engine.cells_used - pinned
        if held < 0 or self.engine.cells_used != self.engine.n_past:
            return None
        owners = self.ledger.owners[len(self.ledger.owners) - held :]
        tokens = self.engine.tokens[pinned:]
        if len(owners) != held or self.ledger.tokens[len(self.ledger.tokens) - held :] != tokens:
            return None  # the record lost track of the cache
        at = next((i for i, owner in enumerate(owners) if owner in dropped), held)
        while at > 0 and self.ledger.kinds.get(owners[at - 1]) == "recalled":
            at -= 1  # the snippets recalled for a dropped turn go with it
        if kept_last is None:
            return (pinned, None, False) if at == 0 else None
        mid, role, content = kept_last
        if at == 0 or owners[at - 1] != mid:
            return None  # the cache does not end with the kept message (evicted, or a note)
        start = at
        while start > 0 and owners[start - 1] == mid:
            start -= 1
        run = tokens[start:at]
        closing = self._closing_tokens(role)
        closed = bool(closing) and run[-len(closing) :] == closing
        if role == "assistant":
            return pinned + at, {"role": role, "content": content}, not closed
        return (pinned + at, {"role": role, "content": content}, False) if closed else None

    def _closing_tokens(self, role: str) -> list[int]:
        """The tokens the template closes a `role` message with (ChatML: <|im_end|> and a
        newline); a reply the model generated lacks them (it stops at end-of-generation)."""
        mark = "\x00localctx\x00"
        rendered = layout.render(
            self.engine.format_chat, [{"role": role, "content": mark}], generation=False
        )
        at = rendered.rfind(mark)
        return self.engine.tokenize(rendered[at + len(mark) :]) if at >= 0 else []

    # ------------------------------------------------------------------ lending
    def lend(self) -> LentCache:
        """Save the conversation's sequence state so the summarizer may use the cache (and the
        turn's throughput figures, which the summarizer's decoding would overwrite)."""
        tokens = self.engine.tokens
        data = self.engine.state_get() if tokens else b""
        if hasattr(self.policy, "freeze"):
            self.policy.freeze()  # readers (the gauge) see the conversation, not the scratch
        return tokens, data, copy.copy(self.engine.stats)

    def give_back(self, saved: LentCache) -> None:
        """Put the conversation back exactly (~2 ms per 1,000 tokens), else re-decode it.
        Never stopped half-way: a cancel must not leave the summarizer's scratch behind."""
        tokens, data, stats = saved
        try:
            with self.engine.cancellable(None):
                try:
                    if tokens:
                        self.engine.state_set(data, tokens)
                    else:
                        self.engine.kv_clear()
                except EngineFailed:
                    self.notices.append("context restore failed after summarizing; re-decoded it")
                    self.engine.kv_clear()
                    self.engine.decode(tokens)  # same tokens and positions: no policy change
        finally:
            vars(self.engine.stats).update(vars(stats))
            if hasattr(self.policy, "thaw"):
                self.policy.thaw()

    # ------------------------------------------------------------------ snapshots
    def save_snapshot(self, name: str, extra: dict[str, Any]) -> str | None:
        """The whole context as a session snapshot; its key, or None when it was not saved
        (a notice says why)."""
        if not self.started or self.snapshots is None:
            return None
        try:
            self.collect_evictions()
            meta = self.ledger.snapshot_meta(name, self.engine.cells_used)
            meta.update(extra)
            return self.snapshots.save(
                self.identity(), self.engine.tokens, self.engine.state_get(), meta
            )
        except (EngineFailed, OSError, LocalctxError) as exc:
            self.notices.append(f"session snapshot not saved: {exc}")
            return None
        finally:
            self.notices.extend(self.snapshots.notices)
