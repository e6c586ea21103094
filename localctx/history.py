"""Edits of a session's history: a new reply to the newest message, taking the newest exchange
back, cutting the history at a message (an API client's edited history), another system
prompt, and the explicit memory commands (/remember, /forget).

Each edit changes three things that must agree: the store's rows, the session's `messages`,
and what the KV cache holds. The cheap way is preferred whenever the record can prove it
exact — cutting the end of the cache (milliseconds) — and the dear one (re-decoding the pinned
region and the newest messages, one window of prefill) only when text already left the window.

`HistoryEdits` is the Session's part that does them (localctx.session holds the turn
pipeline); it works on the session's context (context.KvContext) and store.

Must not: render anything, or import llama_cpp / textual.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import replace

from localctx.engine.base import ChatMessage, Sampling
from localctx.errors import BadInput, Cancelled, EngineFailed
from localctx.memory.explicit import forget_everywhere
from localctx.memory.recall import Forgotten
from localctx.session_base import SessionBase
from localctx.turns import TurnEvent, note_owner, stored_last_turn


class HistoryEdits(SessionBase):
    # ------------------------------------------------------------------ the newest exchange
    def _regenerate(
        self, sampling: Sampling, cancel: threading.Event | None
    ) -> Iterator[TurnEvent]:
        """A new reply to the newest message, from the same context, without reading the
        message again: the last reply's tokens leave the end of the cache (its row the store)
        and the model answers anew. When the reply is not the end of the cache any more, the
        exchange is taken back and the message sent again."""
        turn = self._last_turn or stored_last_turn(self.store, self._sid)
        if turn is None:
            raise BadInput("there is no reply to regenerate yet")
        ctx = self.context
        if not ctx.started:
            self.prepare_turn(summarize=False)
        runs = ctx.tail()
        reply = len(runs[-1][2]) if runs and runs[-1][0] == turn.reply_id else 0
        rest = runs[:-1] if reply else runs
        user = next((m for m in reversed(self.messages) if m["role"] == "user"), None)
        if user is None or not rest or rest[-1][0] != turn.user_id:
            text = self.retract_last_turn()
            if text is None:
                raise BadInput("there is no reply to regenerate yet")
            yield from self._stream(text, sampling, cancel)
            return
        # The logits llama.cpp holds are those after the old reply's last token: decode
        # the prompt's last token again so sampling starts where the first reply did.
        with self.engine.cancellable(None):
            self.engine.kv_remove(self.engine.n_past - reply - 1, -1)
            ctx.begin(turn.user_id, "message")
            ctx.decode(rest[-1][2][-1:])
        ctx.ledger.drop_tail(reply, {"role": "user", "content": user["content"]}, False)
        if self.messages and self.messages[-1]["role"] == "assistant":
            self.messages.pop()
        if self.store is not None and turn.reply_id > 0:
            self.store.discard_message(turn.reply_id)
        self._last_prompt_tokens = self._last_reused = self.engine.cells_used
        yield from self._reply(replace(turn, reply_id=0), sampling, cancel)

    def retract_last_turn(self) -> str | None:
        """Take back the newest exchange (the user's message and the reply to it), to ask it
        again or edit it: its tokens leave the end of the cache, its messages leave the store
        and `messages`. Text the turn pushed out of the window stays in memory as evicted
        segments (putting it back would mean reading it again). Returns the user's text, or
        None when there is no exchange to take back."""
        turn = self._last_turn or stored_last_turn(self.store, self._sid)
        if turn is None:
            return None
        if not self.context.started:
            self.prepare_turn(summarize=False)
        mine = {turn.user_id, turn.reply_id}
        if turn.recalled_owner is not None:
            mine.add(turn.recalled_owner)
        runs = self.context.tail()
        n = 0
        while runs and runs[-1][0] in mine:
            n += len(runs.pop()[2])
        only_pinned = self.engine.cells_used - n <= self.context.pinned_len  # once they go
        before = None if only_pinned else turn.before
        self.context.drop_tail(n, before, bool(before) and turn.before_open)
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

    # ------------------------------------------------------------------ explicit memory
    def remember(self, text: str) -> int:
        """/remember: pin a fact to core memory; it is in context from the next turn on."""
        if self.store is None:
            raise EngineFailed("this session has no memory store")
        used, need = self.core_tokens(), self.context.count(text.strip())
        if used + need > self.core_budget:
            raise BadInput(
                f"core memory holds {used} of its {self.core_budget} tokens and this needs "
                f"{need}: it is in every context and never trimmed, so pin a shorter excerpt "
                "or /forget a core fact (c…) first"
            )
        cid = self.store.add_core(text)
        self.core = self.store.core()
        if self.context.started:  # in the window now, in the pinned region from the next rebuild
            self.context.pinned_dirty = True
            note: ChatMessage = {"role": "system", "content": f"Remember: {text.strip()}"}
            with contextlib.suppress(Cancelled):  # stopped: pinned from the next rebuild on
                self.context.append(note, note_owner(cid), "message")
        return cid

    def forget(self, id_or_query: str) -> Forgotten:
        """/forget: delete by id or query everywhere, and drop it from the live context now."""
        if self.store is None:
            raise EngineFailed("this session has no memory store")
        gone, _ = forget_everywhere(self.store, self.snapshots, id_or_query)
        if gone.ids:
            self.core = self.store.core()
            self.running_summary = self.store.running_summary(self._sid)
            if self.context.started:
                notes = {note_owner(c) for c in gone.numbers("c")}
                forgotten = set(gone.ids)
                recalled = {o for o, ids in self._recalled_ids.items() if ids & forgotten}
                self.last_recall = [i for i in self.last_recall if i.id not in forgotten]
                # Stopped half-way, the context is rebuilt from memory at the next turn.
                with contextlib.suppress(Cancelled):
                    self._rebuild(drop=gone.numbers("m") | notes | recalled)
        return gone

    @property
    def core_budget(self) -> int:
        """Tokens core memory may hold: it is pinned in every context and never trimmed, so a
        pinned 20 KB message would crowd out the conversation in every later turn."""
        return max(128, min(1024, self.window // 8))

    def core_tokens(self) -> int:
        return sum(self.context.count(text) for _, text in self.core)

    # ------------------------------------------------------------------ history edits (serve)
    def set_system_prompt(self, text: str) -> bool:
        """Use another system prompt (an API client sends its own): the pinned region and the
        window tail are re-decoded once. Returns whether it changed."""
        if text == self.system_prompt:
            return False
        self.system_prompt = text
        if self.context.started:
            self._rebuild()
        return True

    def rewind(self, keep: int) -> str:
        """Drop every message after the first `keep` (an edited history, an abandoned turn):
        from the store and its index, from the segments and summaries that hold them, from any
        KV snapshot of this session, and from the cache.

        Returns "trimmed" when the dropped messages were all still in the window (the cache is
        cut at their first token: milliseconds), "rebuilt" when some had been evicted (the
        pinned region and the newest kept messages are re-decoded, as on a resume without a
        snapshot: one window of prefill), "dropped" before the context started, "" when there
        was nothing to drop.
        """
        if self.store is None:
            raise EngineFailed("rewinding a session needs its memory store")
        ctx = self.context
        if ctx.started:
            ctx.collect_evictions()  # every evicted segment is in the store before deleting
        rows = self.store.messages(self._sid)
        if keep < 0 or keep >= len(rows):
            return ""
        dropped = [mid for mid, _, _ in rows[keep:]]
        cut = None
        if ctx.started and not set(dropped) & self._evicted_message_ids:
            cut = ctx.cut_after(set(dropped), rows[keep - 1] if keep else None)
        summary = self.store.running_summary(self._sid)
        deleted: set[str] = set()
        for mid in reversed(dropped):  # newest first: a kill mid-way leaves a prefix
            deleted.update(self.store.forget(f"m{mid}").ids)
        held_in_segments = any(item.startswith("s") for item in deleted)
        if not held_in_segments:  # forget rebuilt the running summary from the segments: undo
            self.store.set_running_summary(self._sid, summary)
        key = self.store.snapshot_key(self._sid)
        if key and self.snapshots is not None:  # it holds the dropped text: never resume it
            self.snapshots.delete(key)
        self.store.set_snapshot_key(self._sid, None)
        self._evicted_message_ids.difference_update(dropped)
        if not ctx.started:
            return "dropped"
        if cut is not None and not held_in_segments:
            position, last, last_open = cut
            ctx.drop_tail(self.engine.n_past - position, last, last_open)
            self.messages = self.messages[:keep]
            return "trimmed"
        self.running_summary = self.store.running_summary(self._sid)
        self.core = self.store.core()
        self._decode_pinned()
        self._replay_history()
        return "rebuilt"
