"""SessionSlots: the sessions a server holds, and which one's KV state is in the engine.

One engine has one KV cache, and a Session assumes it owns it. So exactly one slot is
*loaded*; before another session runs, the loaded one is *parked*: its sequence state is copied
out (llama_state_seq_get_data, ~2 ms per 1,000 tokens; 0.3 s for an 89 MiB state) and put back
when its turn comes. Parked states live in RAM up to `park_bytes`; a session that does not fit
is closed instead — its KV snapshot written to disk, as `localctx chat` does on quit — and
reopened from that snapshot on its next request.

Every session shares one RecallStore and one SnapshotStore (one SQLite connection, and one
integrity check at start instead of one per session opened). Opening a session consults the
ServeJournal, so a server killed mid-turn comes back to each
session's last committed turn (see localctx.serve.journal). Stateless requests get an
ephemeral session that is deleted when the request ends.

Runs only on the model thread. Must not: talk HTTP, or touch a session that is not loaded.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from localctx.engine.base import Engine
from localctx.memory.recall import RecallStore
from localctx.memory.snapshots import SnapshotStore
from localctx.serve.journal import ServeJournal
from localctx.serve.metrics import ServeMetrics
from localctx.session import Session

log = logging.getLogger("localctx.serve")


@dataclass(frozen=True)
class SlotOptions:
    window: int | None = None  # the sink window (None: the whole context)
    repo: Any = None  # an attached RepoContext shared by every session
    park_bytes: int = 1 << 30  # RAM for parked KV states; beyond it sessions go to disk
    max_sessions: int = 64  # sessions held open in memory
    evict: str = "window"  # the sink window's eviction policy
    recent: int | None = None


@dataclass(eq=False)
class SessionSlot:
    name: str | None  # None: a stateless request's throwaway session
    session: Session
    started: bool = False  # its context is decoded (prepare_turn ran)
    parked: tuple[list[int], bytes] | None = None
    last_used: float = 0.0
    may_have_pending: bool = True  # evicted segments may wait for a summary

    @property
    def ephemeral(self) -> bool:
        return self.name is None


class SessionSlots:
    def __init__(
        self,
        engine: Engine,
        options: SlotOptions,
        journal: ServeJournal,
        metrics: ServeMetrics,
    ) -> None:
        self.engine = engine
        self.options = options
        self.journal = journal
        self.metrics = metrics
        self.loaded: SessionSlot | None = None
        self._open: OrderedDict[str, SessionSlot] = OrderedDict()
        self.parked_bytes = 0
        self.store = RecallStore()
        self.snapshots = SnapshotStore()

    # ------------------------------------------------------------------ lifecycle
    def recover(self) -> int:
        """Delete the throwaway sessions a killed server left in the store."""
        names = self.journal.ephemerals()
        if not names:
            return 0
        for name in names:
            if self.store.session_exists(name):
                self.store.delete_session(self.store.session_id(name))
            self.journal.remove_ephemeral(name)
        log.info("removed %d stateless session(s) a stopped server left behind", len(names))
        return len(names)

    def acquire(self, name: str | None, system_prompt: str) -> SessionSlot:
        """The slot for `name` (opened, resumed or new), loaded into the engine."""
        if name is None:
            slot = self._open_ephemeral(system_prompt)
        else:
            slot = self._open.get(name) or self._open_named(name, system_prompt)
            self._open.move_to_end(name)
        self._load(slot)
        slot.last_used = time.monotonic()
        return slot

    def release(self, slot: SessionSlot) -> None:
        """After a request: a stateless session is deleted; a named one stays loaded."""
        if not slot.ephemeral:
            return
        try:
            slot.session.close()  # ephemeral: deletes its rows
        finally:
            self.journal.remove_ephemeral(slot.session.name or "")
            if self.loaded is slot:
                self.loaded = None

    def discard(self, slot: SessionSlot, reason: str) -> None:
        """Drop a session whose context can no longer be trusted (a failed rewind): the next
        request reopens it from the store; its journal entry makes that re-decode it."""
        log.warning("session %s: %s; its context will be rebuilt from the store", slot.name, reason)
        if slot.name is not None:
            self._open.pop(slot.name, None)
        if self.loaded is slot:
            self.loaded = None
        if slot.parked is not None:
            self.parked_bytes -= len(slot.parked[1])
        self._report()

    def close_all(self) -> None:
        """Shutdown: write every session's snapshot (loading each parked one back first)."""
        for slot in list(self._open.values()):
            try:
                self._load(slot)
                self._close(slot)
            except Exception as exc:  # one bad session must not keep the others unsaved
                log.warning("session %s: not saved at shutdown: %s", slot.name, exc)
        self._open.clear()
        self._report()
        self.store.close()

    @property
    def open_count(self) -> int:
        return len(self._open)

    # ------------------------------------------------------------------ internals
    def _open_named(self, name: str, system_prompt: str) -> SessionSlot:
        entry = self.journal.entry(name)
        session = self._session(name, system_prompt)
        if entry.dirty and session.store is not None:
            key = session.store.snapshot_key(session.session_id)
            if key:
                if session.snapshots is not None:
                    session.snapshots.delete(key)
                session.store.set_snapshot_key(session.session_id, None)
            log.info(
                "session %s: the previous server stopped without saving its context; "
                "re-decoding it from the stored messages",
                name,
            )
        if entry.pending is not None:
            session.rewind(entry.pending)  # before the context starts: store rows only
            self.journal.end(name)
            log.info(
                "session %s: dropped the turn a stopped server left unfinished "
                "(kept the first %d messages)",
                name,
                entry.pending,
            )
            self.metrics.count("rewinds")
        slot = SessionSlot(name, session)
        self._open[name] = slot
        self.metrics.count("sessions_opened")
        self._report()
        return slot

    def _open_ephemeral(self, system_prompt: str) -> SessionSlot:
        name = f"serve-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
        self.journal.add_ephemeral(name)  # before its first row: a kill leaves it listed
        return SessionSlot(None, self._session(name, system_prompt, ephemeral=True))

    def _session(self, name: str, system_prompt: str, *, ephemeral: bool = False) -> Session:
        return Session(
            self.engine,
            system_prompt,
            store=self.store,
            snapshots=self.snapshots,
            name=name,
            window=self.options.window,
            repo=self.options.repo,
            summarize_per_turn=0,  # summaries run while the queue is idle (worker)
            ephemeral=ephemeral,
            evict=self.options.evict,
            recent=self.options.recent,
        )

    def _load(self, slot: SessionSlot) -> None:
        if self.loaded is slot:
            return
        if self.loaded is not None:
            self._park(self.loaded)
        if slot.parked is not None:
            tokens, data = slot.parked
            slot.parked = None
            self.parked_bytes -= len(data)
            if tokens:
                self.engine.state_set(data, tokens)
            else:
                self.engine.kv_clear()
        self.loaded = slot
        self._report()

    def _park(self, slot: SessionSlot) -> None:
        """Copy the loaded session's state out of the engine (or close it to disk)."""
        self.loaded = None
        if slot.ephemeral or slot.name not in self._open:
            return
        if not slot.started:
            slot.parked = None  # nothing decoded yet: it starts from an empty cache anyway
            return
        tokens = self.engine.tokens
        data = self.engine.state_get() if tokens else b""
        over_budget = self.parked_bytes + len(data) > self.options.park_bytes
        if over_budget or len(self._open) > self.options.max_sessions:
            self._close(slot)  # still in the engine: its snapshot is written from there
            self.metrics.count("sessions_parked_to_disk")
            return
        slot.parked = (tokens, data)
        self.parked_bytes += len(data)

    def _close(self, slot: SessionSlot) -> None:
        """Save the (loaded) session's snapshot and forget it; the journal marks it clean.

        The old snapshot key is cleared first: if writing the new one fails (a full disk), the
        session reopens from its stored messages rather than from a snapshot that is behind."""
        session = slot.session
        store, snapshots = session.store, session.snapshots
        old = store.snapshot_key(session.session_id) if store and slot.started else None
        if old and store is not None:
            store.set_snapshot_key(session.session_id, None)
        try:
            session.close()
            new = store.snapshot_key(session.session_id) if store is not None else None
            if old and new != old and snapshots is not None:
                snapshots.delete(old)
            for notice in slot.session.notices:
                log.info("session %s: %s", slot.name, notice)
        finally:
            if slot.name is not None:
                self._open.pop(slot.name, None)
                self.journal.clean(slot.name)
            if self.loaded is slot:
                self.loaded = None
            self._report()

    def _report(self) -> None:
        self.metrics.set(sessions_open=len(self._open), parked_bytes=self.parked_bytes)
