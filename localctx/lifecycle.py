"""A session's context from start to close: start it (taking back a turn a dead process left
open), resume it from the session's KV snapshot when that still holds the stored conversation,
else decode the pinned region and replay the newest messages; rebuild it when the pinned
region changed; save it as a snapshot and release what the session opened at close.

Whoever opens a store closes it: `Session.open` opens the recall store and (for a path) the
repository, and `close` releases them; a store passed to the constructor stays its caller's.

Must not: render anything, or import llama_cpp / textual.
"""

from __future__ import annotations

from localctx.context.pinned import PinnedParts
from localctx.errors import Cancelled
from localctx.session_base import SessionBase


class ContextLifecycle(SessionBase):
    def close(self) -> None:
        """Save the whole context as a KV snapshot for `--session` resume, then release what
        this session opened. Never raises: a failed snapshot is a notice. Idempotent."""
        if self._closed:
            return
        self._closed = True
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
            if self._owns_store and self.store is not None:
                self.store.close()
                self._owns_store = False
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _save_snapshot(self) -> None:
        if not self.context.started or self.store is None or self.snapshots is None:
            return
        # What a resume checks the snapshot against: the conversation stored when it was
        # taken, and the running summary its pinned region was decoded with.
        extra = {
            "core_ids": [cid for cid, _ in self.core],
            "last_message_id": self.store.last_message_id(self._sid),
            "pinned_summary": self.context.pinned_summary,
        }
        key = self.context.save_snapshot(self.name or "", extra)
        if key:
            previous = self.store.snapshot_key(self._sid)
            self.store.set_snapshot_key(self._sid, key)
            if previous and previous != key:  # one snapshot per session: the newest
                self.snapshots.delete(previous)

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

    def _decode_pinned(self) -> None:
        self.context.decode_pinned(
            self._pinned(), self.running_summary, [cid for cid, _ in self.core]
        )

    def _rebuild(self, drop: set[int] | None = None) -> None:
        """New pinned region (summary or core changed): one window of prefill."""
        core_ids = [cid for cid, _ in self.core]
        self.context.rebuild(self._pinned(), self.running_summary, core_ids, drop)

    def _start(self) -> None:
        self.context.started = True
        if self.store is not None and self.store.has_open_turn(self._sid):
            # A turn whose process died (or whose take-back failed on a full disk).
            gone = self.store.discard_turn(self._sid)
            self.notices.append(
                f"the last turn of session '{self.name}' did not finish (its process was "
                f"stopped, or the disk was full): its {gone} stored row(s) were taken back; "
                "ask it again"
            )
        try:
            with self.context.stage("starting the context", 0):
                if self.store is not None and self._resume_from_snapshot():
                    return
                self._decode_pinned()
                if self.store is not None:
                    self._replay_history()
        except Cancelled:
            self.context.go_stale()
            raise

    def _replay_history(self) -> None:
        """Resume without a usable snapshot: the newest messages that fit half the window go
        back into the cache; older ones stay reachable through recall."""
        assert self.store is not None
        rows = self.store.messages(self._sid)
        self.context.replay(rows)
        if rows:
            self.messages = [{"role": r, "content": c.strip()} for _, r, c in rows]

    def _resume_from_snapshot(self) -> bool:
        assert self.store is not None
        key = self.store.snapshot_key(self._sid)
        if not key or self.snapshots is None:
            return False
        stored = self.store.last_message_id(self._sid)
        if not self.context.resume(key, stored, self.running_summary, self._pinned):
            return False
        rows = self.store.messages(self._sid)
        self.messages = [{"role": r, "content": c.strip()} for _, r, c in rows]
        return True
