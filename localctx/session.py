"""One conversation without a UI: messages in, streamed tokens out. Used by `ask` and the TUI.

The KV cache holds [sinks | pinned: system prompt, core memory, repo digest, running summary |
recalled snippets | rolling window of messages]. Each message is decoded once, as the template
increment after the previous one (re-prefilling a 1,000-token history costs 4-8 s on 2 cores;
appending costs only the new tokens). A sink window (localctx.kv.policy) evicts the oldest
window tokens when the cache is full; every evicted segment goes to the recall store verbatim
and is summarized by the same model *between* turns (`summarize_pending`), never while tokens
stream. Before each answer the user's message is searched (BM25) over the recall store and the
attached repo, and the best passages that fit a token budget are decoded right before it.

Long work can be stopped and watched: within `supervised(cancel, progress)` (or with
`stream(..., cancel=)`) setting the event stops a prefill within one batch, a reply within one
token and the summaries between (and inside) segments; a message whose prefill was stopped is
taken back whole (cells, window bookkeeping, ledger, store), so the session is exactly as
before it. Prefills report `Progress` in tokens after every batch, summaries in segments.

Must not: render anything, or import llama_cpp / textual. `Session(engine)` alone keeps the
old behaviour (no stores, no disk); `Session.open(...)` wires the memory tiers.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from localctx.engine.base import ChatMessage, Engine, Sampling, TokenEvent
from localctx.errors import (
    BadInput,
    Cancelled,
    EngineFailed,
    LocalctxError,
    StoreFull,
    StoreUnwritable,
)
from localctx.kv.segment import EvictedSegment
from localctx.memory import layout, retrieval, summarizer
from localctx.memory.context import ContextLedger, PinnedParts, identity_for, make_policy
from localctx.memory.expand import expand_query
from localctx.memory.explicit import forget_everywhere
from localctx.memory.locks import SessionLock
from localctx.memory.recall import Forgotten, RecallStore
from localctx.memory.retrieval import RecalledItem
from localctx.memory.snapshots import SnapshotStore
from localctx.turns import Exchange, TurnControl

DEFAULT_SYSTEM = (
    "You are localctx, a helpful assistant running fully offline on the user's machine. "
    "Answer concisely and accurately."
)
PINNED_ID = 0  # message id the pinned region is attributed to
RECALL_BUDGET_MAX = 1536  # tokens of recalled text per turn, at most a quarter of the window
# Where a base model starts the next turn of the plain transcript (it has no end-of-turn token).
PLAIN_STOPS = ("\nUser:", "\nSystem:")


def _cut_index(stops: tuple[str, ...], pieces: list[str]) -> int:
    """How many generated pieces come before a stop begins (all of them if none does)."""
    text = "".join(pieces)
    found = [at for at in (text.find(stop) for stop in stops) if at >= 0]
    if not found:
        return len(pieces)
    at = min(found)
    length = 0
    for i, piece in enumerate(pieces):
        length += len(piece)
        if length > at:
            return i
    return len(pieces)


def _fresh_name(prefix: str) -> str:
    """A collision-free session name: the time, for people, and random bits, for processes
    started in the same second."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def _note_owner(core_id: int) -> int:
    """Owner id of the in-window note a /remember adds (negative: not a stored message)."""
    return -(10**6 + core_id)


@dataclass
class TurnResult:
    answer: str
    prompt_tokens: int
    completion_tokens: int
    prefill_tps: float
    decode_tps: float
    reused_tokens: int
    stop_reason: str
    recalled: list[RecalledItem] = field(default_factory=list)


@dataclass
class EvictionReport:
    """The latest segment the window evicted; `summary` is filled in once written."""

    segment_id: int | None
    n_tokens: int
    text: str
    summary: str | None = None
    runs: int = 1  # a scored policy's segment is scattered over several runs


class Session(TurnControl):
    def __init__(
        self,
        engine: Engine,
        system_prompt: str = DEFAULT_SYSTEM,
        messages: list[ChatMessage] | None = None,
        *,
        store: RecallStore | None = None,
        snapshots: SnapshotStore | None = None,
        name: str | None = None,
        window: int | None = None,
        n_sink: int = 4,
        repo: Any = None,
        recall_budget: int | None = None,
        summary_budget: int | None = None,
        policy_factory: Callable[..., Any] | None = None,
        evict: str = "window",
        recent: int | None = None,
        recall: bool = True,
        summarize_per_turn: int = 2,
        owns_repo: bool = False,
        recall_all: bool = False,
        ephemeral: bool = False,
        expand: bool = True,
    ) -> None:
        self.engine = engine
        self.system_prompt = system_prompt
        self.messages: list[ChatMessage] = list(messages or [])
        self.store = store
        self.snapshots = snapshots
        self.name = name
        self.repo = repo  # localctx.ingest RepoContext (digest, repo, store) or None
        self.window = window if window else engine.n_ctx
        self.n_sink = n_sink
        # Room for ~5 repository spans before the question when the window allows: the
        # answering lines can only help if they are inserted (512 tokens held 1-3 chunks).
        # On 2 CPU cores the extra ~1,000 tokens cost ~8 s of first token with the 0.5B.
        self.recall_budget = recall_budget or max(64, min(RECALL_BUDGET_MAX, self.window // 4))
        self.summary_budget = summary_budget or max(64, min(256, self.window // 6))
        self.policy: Any = None
        self.last_recall: list[RecalledItem] = []
        self.last_eviction: EvictionReport | None = None
        self.evictions: list[EvictedSegment] = []  # kept only when there is no store
        self.notices: list[str] = []  # snapshot fallbacks etc., for the UI to show once
        self.eviction_count = 0  # segments evicted by this session (the window's own count
        # restarts when a new pinned region rebuilds the context)
        self.running_summary = ""
        self.core: list[tuple[int, str]] = []
        # Segments summarized before a turn starts: bounds the wait (a summary is a prefill
        # plus up to 64 decoded tokens, ~3 s each with SmolLM2-135M on 2 cores); the rest wait
        # for `summarize_pending()` between turns (the UI's worker, `ask` after answering).
        self.summarize_per_turn = summarize_per_turn
        # Recall searches this session's own messages and segments (and the repository);
        # every session's only when asked (`--recall all`, the TUI's toggle).
        self.recall_all = recall_all
        # An ephemeral session (`ask` without --session) answers and leaves nothing behind.
        self.ephemeral = ephemeral
        # Code search also searches the model's guess at the answering code (memory.expand).
        self.expand = expand
        self.last_expansion = ""
        self._owns_repo = owns_repo
        # The eviction policy (kv/scoring.py): the window, or one that scores cells.
        self.recall = recall  # off: nothing is recalled (a benchmark of the cache alone)
        self._policy_factory = policy_factory or functools.partial(
            make_policy, evict=evict, recent=recent
        )
        self._sid = 0
        self._ledger = ContextLedger()
        self._started = False
        self._recalled_seq = 0
        self._recalled_ids: dict[int, set[str]] = {}  # recalled block owner -> item ids
        self._local_ids = 0
        self._pinned_dirty = False
        self._evicted_since_rebuild = 0
        self._evicted_message_ids: set[int] = set()
        self._last_prompt_tokens = 0
        self._last_reused = 0
        self._lock: SessionLock | None = None  # held by Session.open for a named session
        self._pinned_summary = ""  # the running summary the cached pinned region holds
        self._turn_start = 0  # len(self.messages) before the open turn's first message
        if store is not None:
            self._sid = store.session_id(name or "default", model=engine.model_name)
            self.running_summary = store.running_summary(self._sid)
            self.core = store.core()

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
            session_name = name or _fresh_name("ask" if options.get("ephemeral") else "session")
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
        session._lock = lock
        return session

    # ------------------------------------------------------------------ what the UI reads
    @property
    def session_id(self) -> int:
        return self._sid

    def pinned_tokens(self) -> int:
        return self._ledger.pinned_len

    # ------------------------------------------------------------------ a turn
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
        sampling = sampling or Sampling()
        cancel = cancel if cancel is not None else self._cancel
        with self.engine.cancellable(cancel):
            yield from self._stream(user_text, sampling, cancel)

    def _stream(
        self, user_text: str, sampling: Sampling, cancel: threading.Event | None
    ) -> Iterator[TokenEvent]:
        self.prepare_turn()
        cells_before = self.engine.cells_used
        shown, seq = self.last_recall, self._recalled_seq
        self.last_recall = self._recall(user_text)
        before = self._mark()  # after recall: whatever it does, the rollback starts here
        before.last_recall, before.recalled_seq = shown, seq
        recalled: ChatMessage | None = None
        if self.last_recall:
            self._recalled_seq += 1
            # Which stored items this recalled block holds, so a /forget can take it out.
            self._recalled_ids[-self._recalled_seq] = {item.id for item in self.last_recall}
            recalled = {"role": "system", "content": retrieval.recalled_text(self.last_recall)}
        user: ChatMessage = {"role": "user", "content": user_text}
        recalled_tokens, user_tokens = self._turn_tokens(recalled, user)
        self.messages.append({"role": "user", "content": user_text})
        uid, aid = self._begin_turn(("user", user_text), ("assistant", ""))
        try:
            n_new = len(recalled_tokens) + len(user_tokens)
            with self._stage("reading the prompt", n_new):
                self._keep_state_if_evicting(before, n_new)
                if recalled is not None:
                    self._append_tokens(recalled_tokens, recalled, -self._recalled_seq, "recalled")
                self._append_tokens(user_tokens, user, uid, "message")
        except Cancelled:
            self._rewind(before)  # the cache, the window, the ledger, the messages
            if self.store is not None:
                self.store.discard_turn(self._sid)  # its rows, and segments it evicted
            raise
        except Exception as exc:
            raise self._abandon_turn(exc) from None
        finally:
            before.drop_state()
        self._last_prompt_tokens = self.engine.cells_used
        self._last_reused = min(cells_before, self._last_prompt_tokens)
        recalled_owner = -self._recalled_seq if recalled is not None else None
        turn = Exchange(uid, aid, recalled_owner, before.ledger.last, before.ledger.last_open)
        yield from self._reply(turn, sampling, cancel)

    def regenerate(
        self, sampling: Sampling | None = None, *, cancel: threading.Event | None = None
    ) -> Iterator[TokenEvent]:
        """A new reply to the newest message, from the same context, without reading the
        message again: the last reply's tokens leave the end of the cache (its row the store)
        and the model answers anew. When the reply is not the end of the cache any more, the
        exchange is taken back and the message sent again."""
        sampling = sampling or Sampling()
        cancel = cancel if cancel is not None else self._cancel
        turn = self._last_turn or self._stored_last_turn()
        if turn is None:
            raise BadInput("there is no reply to regenerate yet")
        with self.engine.cancellable(cancel):
            if not self._started:
                self.prepare_turn(summarize=False)
            runs = self._ledger.tail(self.engine.tokens)
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
                self._begin(turn.user_id, "message")
                self._decode(rest[-1][2][-1:])
            self._ledger.drop_tail(reply, {"role": "user", "content": user["content"]}, False)
            if self.messages and self.messages[-1]["role"] == "assistant":
                self.messages.pop()
            if self.store is not None and turn.reply_id > 0:
                self.store.discard_message(turn.reply_id)
            self._last_prompt_tokens = self._last_reused = self.engine.cells_used
            yield from self._reply(replace(turn, reply_id=0), sampling, cancel)

    def _reply(
        self, turn: Exchange, sampling: Sampling, cancel: threading.Event | None
    ) -> Iterator[TokenEvent]:
        """Generate and record the reply to `turn.user_id`, whose message ends the cache; its
        row is `turn.reply_id` (opened with the turn), or a new open turn of its own."""
        if turn.reply_id > 0:
            aid = turn.reply_id
        else:
            (aid,) = self._begin_turn(("assistant", ""))
            self._turn_start = len(self.messages)  # the question before it stays
        self._begin(aid, "message")
        pieces: list[str] = []
        generated: list[int] = []
        # A base model on the plain transcript has no end-of-turn token: it goes on to write
        # the user's next line. Stop there, and take those tokens back out of the cache.
        plain = self.engine.chat_template_source.startswith("none")
        stops = (PLAIN_STOPS if plain else ()) + tuple(sampling.stop)
        failure: Exception | None = None
        try:
            for event in self.engine.generate(sampling, cancel=cancel, make_room=self._room):
                pieces.append(event.text)
                generated.append(event.token)
                if stops and any(stop in "".join(pieces[-8:]) for stop in stops):
                    break
                yield event
        except Exception as exc:
            failure = exc
        finally:
            # Stopping the engine's generator leaves its last token undecoded.
            cached = len(generated) - (self.engine.tokens[-1:] != generated[-1:])
            keep = min(cached, _cut_index(stops, pieces) if stops else cached)
            if cached > keep:
                self.engine.kv_remove(self.engine.n_past - (cached - keep), -1)
            generated, pieces = generated[:keep], pieces[:keep]
            self._ledger.add(generated, aid)
            raw = "".join(pieces)
            self._ledger.last = {"role": "assistant", "content": raw}
            self._ledger.last_open = True
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
        stats = self.engine.stats
        return TurnResult(
            answer=self.messages[-1]["content"],
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
            self._append({"role": role, "content": text}, mid, "message")
        except Exception as exc:
            raise self._abandon_turn(exc) from None
        self._commit_turn({})

    def prepare_turn(self, *, summarize: bool = True) -> None:
        """Between turns: start or resume the context, write pending summaries, refresh the
        pinned region when the running summary changed enough to be worth a re-decode."""
        if not self._started:
            self._start()
        if summarize and self.summarize_per_turn:
            self.summarize_pending(self.summarize_per_turn)
        # At most one re-decode of the window per window of evicted tokens: that bounds the
        # extra prefill to ~1x of what the conversation itself decoded.
        if self._pinned_dirty and self._evicted_since_rebuild >= self.window:
            self._rebuild()

    # ------------------------------------------------------------------ memory between turns
    def summarize_pending(self, max_segments: int | None = None) -> int:
        """Summarize evicted segments still pending (this run's or a crashed run's) with the
        loaded model, updating running summaries. Call between turns; returns how many."""
        if self.store is None:
            return 0
        if self.ephemeral:
            return 0  # its segments are deleted with it
        pending = self.store.pending_segments(max_segments, session_id=self._sid)
        if not pending:
            return 0
        try:
            saved = self._lend_cache()
        except EngineFailed as exc:  # an engine that cannot save its state (a remote server)
            self.notices.append(f"summaries wait for a local model: {exc}")
            return 0
        written = 0
        try:  # a cancel stops it between segments, or inside one (that one stays pending)
            with self._stage("summarizing", len(pending), unit="segments") as stage:
                for seg, summary, running in summarizer.summarize_all(
                    self.engine, self.store, pending, self.summary_budget, self._count
                ):
                    if seg.session_id == self._sid:
                        self.running_summary = running
                        self._pinned_dirty = True
                    if self.last_eviction and self.last_eviction.segment_id == seg.id:
                        self.last_eviction.summary = summary
                    written += 1
                    stage.advance(1)
        except (StoreFull, StoreUnwritable) as exc:  # the segments stay pending, verbatim
            self.notices.append(f"summaries wait for a writable store: {exc}")
        finally:
            self._restore_cache(saved)
        return written

    def remember(self, text: str) -> int:
        """/remember: pin a fact to core memory; it is in context from the next turn on."""
        if self.store is None:
            raise EngineFailed("this session has no memory store")
        used, need = self.core_tokens(), self._count(text.strip())
        if used + need > self.core_budget:
            raise BadInput(
                f"core memory holds {used} of its {self.core_budget} tokens and this needs "
                f"{need}: it is in every context and never trimmed, so pin a shorter excerpt "
                "or /forget a core fact (c…) first"
            )
        cid = self.store.add_core(text)
        self.core = self.store.core()
        if self._started:  # in the window now, in the pinned region from the next rebuild
            self._pinned_dirty = True
            note = {"role": "system", "content": f"Remember: {text.strip()}"}
            with contextlib.suppress(Cancelled):  # stopped: pinned from the next rebuild on
                self._append(note, _note_owner(cid), "message")  # type: ignore[arg-type]
        return cid

    def forget(self, id_or_query: str) -> Forgotten:
        """/forget: delete by id or query everywhere, and drop it from the live context now."""
        if self.store is None:
            raise EngineFailed("this session has no memory store")
        gone, _ = forget_everywhere(self.store, self.snapshots, id_or_query)
        if gone.ids:
            self.core = self.store.core()
            self.running_summary = self.store.running_summary(self._sid)
            if self._started:
                notes = {_note_owner(c) for c in gone.numbers("c")}
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
        return sum(self._count(text) for _, text in self.core)

    def close(self) -> None:
        """Save the whole context as a KV snapshot for `--session` resume, then release the
        stores this session opened. Never raises: a failed snapshot is a notice."""
        try:
            if self.ephemeral:
                if self.store is not None:
                    self.store.delete_session(self._sid)
            else:
                self._save_snapshot()
        finally:
            if self._owns_repo and self.repo is not None:
                self.repo.close()
                self._owns_repo = False
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _save_snapshot(self) -> None:
        if not self._started or self.store is None or self.snapshots is None:
            return
        try:
            self._collect_evictions()
            meta = self._ledger.snapshot_meta(self.name or "", self.engine.cells_used)
            meta["core_ids"] = [cid for cid, _ in self.core]
            # What a resume checks the snapshot against: the conversation stored when it was
            # taken, and the running summary its pinned region was decoded with.
            meta["last_message_id"] = self.store.last_message_id(self._sid)
            meta["pinned_summary"] = self._pinned_summary
            key = self.snapshots.save(
                self._identity(), self.engine.tokens, self.engine.state_get(), meta
            )
            if key:
                previous = self.store.snapshot_key(self._sid)
                self.store.set_snapshot_key(self._sid, key)
                if previous and previous != key:  # one snapshot per session: the newest
                    self.snapshots.delete(previous)
        except (EngineFailed, OSError, LocalctxError) as exc:
            self.notices.append(f"session snapshot not saved: {exc}")
        self.notices.extend(self.snapshots.notices)

    # ------------------------------------------------------------------ the context
    def _pinned(self, summary: str | None = None) -> PinnedParts:
        digest = getattr(self.repo, "digest", "") or ""
        return PinnedParts.build(
            self.engine,
            self.system_prompt,
            [text for _, text in self.core],
            self.running_summary if summary is None else summary,
            digest,
            max_tokens=max(32, self.window // 2),
        )

    def _start(self) -> None:
        self._started = True
        if self.store is not None and self.store.has_open_turn(self._sid):
            # A turn whose process died (or whose take-back failed on a full disk).
            gone = self.store.discard_turn(self._sid)
            self.notices.append(
                f"the last turn of session '{self.name}' did not finish (its process was "
                f"stopped, or the disk was full): its {gone} stored row(s) were taken back; "
                "ask it again"
            )
        try:
            with self._stage("starting the context", 0):
                if self.store is not None and self._resume_from_snapshot():
                    return
                self._decode_pinned()
                if self.store is not None:
                    self._replay_history()
        except Cancelled:
            self._go_stale()
            raise

    def _decode_pinned(self) -> None:
        """Fresh cache: restore the stable pinned prefix from a snapshot or decode it."""
        parts = self._pinned()
        self._pinned_summary = self.running_summary
        self.engine.kv_clear()
        self._retire_policy()
        self.policy = self._new_policy()
        self._ledger = ContextLedger(pinned_len=len(parts.tokens))
        restored = False
        if self.snapshots is not None and parts.stable_worth_saving:
            snap = self.snapshots.find(self._identity(), parts.stable)
            if snap is not None:
                with contextlib.suppress(EngineFailed):
                    self.engine.state_set(snap.data, snap.tokens)
                    restored = True
        self._begin(PINNED_ID, "message")
        self._expect(len(parts.rest) + (0 if restored else len(parts.stable)))
        if not restored:
            self._decode(parts.stable)
            if self.snapshots is not None and parts.stable_worth_saving:
                meta = {"kind": "prefix", "core_ids": [cid for cid, _ in self.core]}
                self.snapshots.save(self._identity(), parts.stable, self.engine.state_get(), meta)
        self._decode(parts.rest)
        self._set_pinned_end(len(parts.tokens))
        self._pinned_dirty = False
        self._evicted_since_rebuild = 0

    def _replay_history(self) -> None:
        """Resume without a usable snapshot: re-decode the newest messages that fit half the
        window; older ones stay reachable through recall."""
        assert self.store is not None
        rows = self.store.messages(self._sid)
        if not rows:
            return
        budget = max(0, (self.window - self._ledger.pinned_len) // 2)
        chosen: list[tuple[int, str, str]] = []
        used = 0
        for row in reversed(rows):
            n = self._count(row[2]) + 8
            if used + n > budget:
                break
            chosen.append(row)
            used += n
        self._expect(used)
        for mid, role, content in reversed(chosen):
            self._append({"role": role, "content": content}, mid, "message")
        self.messages = [{"role": r, "content": c.strip()} for _, r, c in rows]

    def _resume_from_snapshot(self) -> bool:
        assert self.store is not None
        key = self.store.snapshot_key(self._sid)
        if not key or self.snapshots is None:
            return False
        snap = self.snapshots.load(key, self._identity(), missing_ok=False)
        self.notices.extend(self.snapshots.notices)
        self.snapshots.notices.clear()
        if snap is None:
            return False
        stored = self.store.last_message_id(self._sid)
        held = snap.meta.get("last_message_id", stored)  # older snapshots did not record it
        if held != stored:
            self.notices.append(
                "session snapshot does not hold the stored conversation (it was saved before "
                "the last turns, or a turn was taken back); recomputing"
            )
            return False
        # The pinned region as it was decoded: a summary written after it (between turns)
        # enters at the next rebuild, as it would have without the restart.
        pinned_summary = snap.meta.get("pinned_summary", self.running_summary)
        pinned_summary = pinned_summary if isinstance(pinned_summary, str) else ""
        parts = self._pinned(pinned_summary)
        if snap.tokens[: len(parts.tokens)] != parts.tokens:
            self.notices.append("session snapshot predates a memory change; recomputing")
            return False
        try:
            self.engine.state_set(snap.data, snap.tokens)
        except EngineFailed as exc:
            self.notices.append(f"session snapshot rejected ({exc}); recomputing")
            return False
        self._retire_policy()
        self.policy = self._new_policy()
        self._ledger = ContextLedger.from_snapshot(snap.meta, snap.tokens, len(parts.tokens))
        self._set_pinned_end(len(parts.tokens))
        self._pinned_summary = pinned_summary
        self._pinned_dirty = pinned_summary != self.running_summary
        rows = self.store.messages(self._sid)
        self.messages = [{"role": r, "content": c.strip()} for _, r, c in rows]
        return True

    def _rebuild(self, drop: set[int] | None = None) -> None:
        """New pinned region (summary or core changed): re-decode it, then replay the window
        tail that was in the cache (minus `drop`ped messages). Costs one window of prefill."""
        self._collect_evictions()  # first: a scattered eviction changes what the tail is
        tail = self._ledger.tail(self.engine.tokens)
        last, last_open = self._ledger.last, self._ledger.last_open
        kept = [(o, k, t) for o, k, t in tail if not (drop and o in drop)]
        try:
            with self._stage("rebuilding context", sum(len(t) for _, _, t in kept)):
                self._decode_pinned()
                for owner, kind, tokens in kept:
                    self._begin(owner, kind)
                    self._decode(tokens)
                    self._ledger.add(tokens, owner, kind)
        except Cancelled:  # half a context is no context: start it again from memory
            self._go_stale()
            raise
        self._ledger.last, self._ledger.last_open = last, last_open
        self._collect_evictions()

    def _append(
        self, message: ChatMessage, owner: int, kind: str, *, generation: bool = False
    ) -> None:
        fmt = self.engine.format_chat
        text = layout.continuation(
            fmt, self._ledger.last, [message], generation=generation,
            last_open=self._ledger.last_open,
        )  # fmt: skip
        self._append_tokens(self.engine.tokenize(text), message, owner, kind)

    def _append_tokens(
        self, tokens: list[int], message: ChatMessage, owner: int, kind: str
    ) -> None:
        self._begin(owner, kind)
        self._decode(tokens)
        self._ledger.add(tokens, owner, kind)
        self._ledger.last = message
        self._ledger.last_open = False

    def _turn_tokens(
        self, recalled: ChatMessage | None, user: ChatMessage
    ) -> tuple[list[int], list[int]]:
        """The increments a turn decodes (recalled snippets, then the user's message), counted
        before any is decoded: the prefill's progress has its total from the start."""
        fmt = self.engine.format_chat
        last, last_open = self._ledger.last, self._ledger.last_open
        recalled_tokens: list[int] = []
        if recalled is not None:
            text = layout.continuation(fmt, last, [recalled], generation=False, last_open=last_open)
            recalled_tokens = self.engine.tokenize(text)
            last, last_open = recalled, False
        text = layout.continuation(fmt, last, [user], generation=True, last_open=last_open)
        return recalled_tokens, self.engine.tokenize(text)

    # ------------------------------------------------------------------ recall
    def _recall(self, query: str) -> list[RecalledItem]:
        if self.store is None or not self.recall:
            return []
        held = self._ledger.owners_in_cache(self.engine.cells_used)
        exclude = {f"m{m}" for m in held if m > 0 and m not in self._evicted_message_ids}
        exclude |= {f"m{m}" for m in self.store.covered_message_ids(self._sid)}
        candidates = retrieval.gather(
            query,
            self.store,
            exclude=exclude,
            archival=self.repo,
            code_query=self._code_query(query),
            session_id=None if self.recall_all else self._sid,
            max_chars=max(160, min(600, self.recall_budget * 2)),  # ~3-4 chars per token
        )
        return retrieval.select_within_budget(candidates, self.recall_budget, self._count)

    def _code_query(self, query: str) -> str:
        """The question, and with `expand` the model's guess at the code that answers it."""
        self.last_expansion = ""
        if not self.expand or self.repo is None:
            return query
        try:
            saved = self._lend_cache()
        except EngineFailed:  # a remote server: no state to lend
            return query
        try:
            self.last_expansion = expand_query(self.engine, query, Path(self.repo.repo).name)
        finally:
            self._restore_cache(saved)
        return f"{query}\n{self.last_expansion}" if self.last_expansion else query

    # ------------------------------------------------------------------ plumbing
    def _collect_evictions(self) -> None:
        if self.policy is None:
            return
        for seg in self.policy.queue.drain():
            self._evicted_since_rebuild += seg.n_tokens
            self.eviction_count += 1
            kept = self._ledger.conversation_part(seg, self.engine.detokenize)
            if seg.runs:  # scattered cells left the cache: the record keeps what it holds
                self._ledger.forget_runs(seg.stream_runs())
            if kept is None:
                continue  # only recalled snippets: copies of what is stored already
            text, real = kept
            self._evicted_message_ids.update(real)
            seg_id = None
            if self.store is not None:
                seg_id = self.store.add_segment(
                    self._sid,
                    seq=seg.seq,
                    text=text,
                    n_tokens=seg.n_tokens,
                    message_ids=real,
                    stream=(seg.stream_start, seg.stream_end),
                )
            else:
                self.evictions.append(seg)
            self.last_eviction = EvictionReport(
                seg_id, seg.n_tokens, text, runs=max(1, len(seg.runs))
            )

    def _lend_cache(self) -> tuple[list[int], bytes, Any]:
        """Save the conversation's sequence state so the summarizer may use the cache (and the
        turn's throughput figures, which the summarizer's decoding would overwrite)."""
        tokens = self.engine.tokens
        data = self.engine.state_get() if tokens else b""
        if hasattr(self.policy, "freeze"):
            self.policy.freeze()  # readers (the gauge) see the conversation, not the scratch
        return tokens, data, copy.copy(self.engine.stats)

    def _restore_cache(self, saved: tuple[list[int], bytes, Any]) -> None:
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
            self._collect_evictions()
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
        self._started = False  # the cache holds the failed turn; close() saves no snapshot
        if self.policy is not None:
            self.policy.queue.drain()  # segments of the failed turn: never stored
        outcome = "nothing of this turn was stored"
        try:
            self.store.discard_turn(self._sid)
        except LocalctxError:
            outcome = "this turn is taken back when the session next starts"
        if isinstance(failure, LocalctxError):
            return type(failure)(f"{failure}; {outcome}", failure.exit_code)
        return failure

    def _new_policy(self) -> Any:
        """The sink window; each segment it evicts is stored the moment it is evicted."""
        policy = self._policy_factory(self.engine, window=self.window, n_sink=self.n_sink)
        queue = getattr(policy, "queue", None)
        # Collected as evicted: stored at once with a store; without one the ledger still
        # follows a scored policy's scattered evictions before anything reads the tail.
        if hasattr(queue, "listen"):
            queue.listen(self._collect_evictions)
        return policy

    def _begin(self, owner: int, kind: str) -> None:
        if self.policy is not None:
            self.policy.begin_message(owner, kind=kind)

    def _set_pinned_end(self, pos: int) -> None:
        if self.policy is not None:
            self.policy.set_pinned_end(pos)

    def _decode(self, tokens: list[int]) -> None:
        """Through the window when there is one: it also splits a long text into batches that
        fit beside the sinks and the pinned region. Within a reported stage, one batch at a
        time, each reported as it lands."""
        if not tokens:
            return
        decode = self.policy.decode if self.policy is not None else self.engine.decode
        stage, step = self._stage_now, self.engine.settings.n_batch
        if stage is None:
            decode(tokens)
            return
        for i in range(0, len(tokens), step):
            chunk = tokens[i : i + step]
            decode(chunk)
            stage.advance(len(chunk))

    def _room(self, n: int) -> None:
        if self.policy is not None:
            self.policy.make_room(n)

    def _count(self, text: str) -> int:
        return len(self.engine.tokenize(text))

    def _identity(self) -> Any:
        return identity_for(self.engine, self.window)

    # ------------------------------------------------------------------ history edits (serve)
    def set_system_prompt(self, text: str) -> bool:
        """Use another system prompt (an API client sends its own): the pinned region and the
        window tail are re-decoded once. Returns whether it changed."""
        if text == self.system_prompt:
            return False
        self.system_prompt = text
        if self._started:
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
        if self._started:
            self._collect_evictions()  # every evicted segment is in the store before deleting
        rows = self.store.messages(self._sid)
        if keep < 0 or keep >= len(rows):
            return ""
        dropped = [mid for mid, _, _ in rows[keep:]]
        cut = self._rewind_cut(set(dropped), rows[keep - 1] if keep else None)
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
        if not self._started:
            return "dropped"
        if cut is not None and not held_in_segments:
            position, last, last_open = cut
            n_drop = self.engine.n_past - position
            if n_drop > 0:
                self.engine.kv_remove(position, -1)
            self._ledger.drop_tail(n_drop, last, last_open)
            self.messages = self.messages[:keep]
            return "trimmed"
        self.running_summary = self.store.running_summary(self._sid)
        self.core = self.store.core()
        self._decode_pinned()
        self._replay_history()
        return "rebuilt"

    def _rewind_cut(
        self, dropped: set[int], kept_last: tuple[int, str, str] | None
    ) -> tuple[int, ChatMessage | None, bool] | None:
        """Where to cut the cache so that it ends exactly after the kept messages, and the
        ledger's `last` there; None when the cache cannot say (then rebuild)."""
        if not self._started or dropped & self._evicted_message_ids:
            return None
        pinned = self._ledger.pinned_len
        held = self.engine.cells_used - pinned
        if held < 0 or self.engine.cells_used != self.engine.n_past:
            return None
        owners = self._ledger.owners[len(self._ledger.owners) - held :]
        tokens = self.engine.tokens[pinned:]
        if len(owners) != held or self._ledger.tokens[len(self._ledger.tokens) - held :] != tokens:
            return None  # the record lost track of the cache
        at = next((i for i, owner in enumerate(owners) if owner in dropped), held)
        while at > 0 and self._ledger.kinds.get(owners[at - 1]) == "recalled":
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
