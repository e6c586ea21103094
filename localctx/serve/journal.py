"""ServeJournal: what a killed server left unfinished, so the next one starts consistent.

The server keeps sessions open in memory between turns and writes their KV snapshots only when
it closes them (a full 8K-cell SmolLM2 context is ~180 MB: too much to write every turn). A
`kill -9` therefore leaves two things behind that the recall store alone cannot tell apart
from a finished state:

- a turn half-written: the user's message and an empty or partial reply row (the session
  writes both when the turn starts). `begin` records how many messages the session held before
  the turn; `end` clears it once the reply is stored, before the client is told the turn is
  done. On the next open, the session is rewound to that count.
- a stale snapshot: a session used since its last snapshot is `dirty`; on the next open its
  snapshot is dropped and the context is re-decoded from the stored messages (the newest that
  fit half the window; older ones stay reachable through recall).

Stateless requests use throwaway sessions that are deleted when they end; `ephemeral` rows
name any a kill left behind, deleted at the next start.

One SQLite file beside the recall store (`<home>/db/serve.sqlite3`, WAL): a row is committed
before the step it guards, so a kill at any instant leaves either the old or the new state.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from localctx.memory import db


def _create(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE serve_sessions ("
        " name TEXT PRIMARY KEY,"
        " dirty INTEGER NOT NULL DEFAULT 0,"
        " pending INTEGER,"  # messages held before the unfinished turn; NULL: none
        " ephemeral INTEGER NOT NULL DEFAULT 0)"
    )


MIGRATIONS: list[db.Migration] = [("0001_serve_sessions", _create)]


@dataclass(frozen=True)
class JournalEntry:
    dirty: bool
    pending: int | None


class ServeJournal:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or db.store_path("serve")
        self._conn = db.connect(self.path, MIGRATIONS)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def entry(self, name: str) -> JournalEntry:
        with self._lock:
            row = self._conn.execute(
                "SELECT dirty, pending FROM serve_sessions WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            return JournalEntry(False, None)
        return JournalEntry(bool(row[0]), None if row[1] is None else int(row[1]))

    def begin(self, name: str, keep: int) -> None:
        """A turn starts on a session holding `keep` messages; its snapshot is stale from now."""
        self._write(
            "INSERT INTO serve_sessions (name, dirty, pending) VALUES (?, 1, ?)"
            " ON CONFLICT(name) DO UPDATE SET dirty = 1, pending = excluded.pending",
            (name, keep),
        )

    def end(self, name: str) -> None:
        """The turn is committed (or rewound): nothing of it is half-written."""
        self._write("UPDATE serve_sessions SET pending = NULL WHERE name = ?", (name,))

    def clean(self, name: str) -> None:
        """The session was closed: its snapshot is current."""
        self._write("DELETE FROM serve_sessions WHERE name = ? AND ephemeral = 0", (name,))

    def add_ephemeral(self, name: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO serve_sessions (name, ephemeral) VALUES (?, 1)", (name,)
        )

    def remove_ephemeral(self, name: str) -> None:
        self._write("DELETE FROM serve_sessions WHERE name = ? AND ephemeral = 1", (name,))

    def ephemerals(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name FROM serve_sessions WHERE ephemeral = 1"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        with self._lock, self._conn:
            self._conn.execute(sql, args)
