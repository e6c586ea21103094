"""The recall store's schema as named, append-only migrations (never edit an applied one).

Why FTS5 with its own copy of the text (not an external-content table): rows of three kinds
share one index, and the segment body becomes "text + summary" once the summary lands; a
contentful index keeps that a single delete + insert inside the writer's transaction.
"""

from __future__ import annotations

import sqlite3

from localctx.memory.db import Migration


def _run(conn: sqlite3.Connection, script: str) -> None:
    """Statement by statement: `executescript` would COMMIT first and break all-or-nothing."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _0001_recall(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        """
        CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            model TEXT NOT NULL DEFAULT '',
            running_summary TEXT NOT NULL DEFAULT '',
            snapshot_key TEXT,
            created_at TEXT NOT NULL DEFAULT (datetime('now')),
            updated_at TEXT NOT NULL DEFAULT (datetime('now'))
        );
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            created_at TEXT NOT NULL DEFAULT (datetime('now'))
        );
        CREATE INDEX messages_session ON messages(session_id, id);
        CREATE TABLE segments (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            stream_start INTEGER NOT NULL,
            stream_end INTEGER NOT NULL,
            n_tokens INTEGER NOT NULL,
            text TEXT NOT NULL,
            message_ids TEXT NOT NULL DEFAULT '[]',
            summary TEXT NOT NULL DEFAULT '',
            summary_status TEXT NOT NULL DEFAULT 'pending'
                CHECK (summary_status IN ('pending', 'done')),
            created_at TEXT NOT NULL DEFAULT (datetime('now'))
        );
        CREATE INDEX segments_pending ON segments(summary_status, id);
        CREATE TABLE segment_messages (
            segment_id INTEGER NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
            message_id INTEGER NOT NULL,
            PRIMARY KEY (segment_id, message_id)
        );
        CREATE INDEX segment_messages_message ON segment_messages(message_id);
        CREATE TABLE core (
            id INTEGER PRIMARY KEY,
            text TEXT NOT NULL,
            created_at TEXT NOT NULL DEFAULT (datetime('now'))
        );
        CREATE VIRTUAL TABLE recall_fts USING fts5(
            body, kind UNINDEXED, ref_id UNINDEXED, tokenize = 'porter unicode61'
        );
        """,
    )


def _0002_ids_never_reused(conn: sqlite3.Connection) -> None:
    """SQLite hands a deleted row's id (the highest) to the next insert: after `/forget m12`
    a new message became m12 again, and a second `/forget m12` deleted it. `retired_ids`
    keeps, per kind, the highest id ever deleted (triggers); inserts start above it."""
    conn.execute(
        "CREATE TABLE retired_ids (kind TEXT PRIMARY KEY, high INTEGER NOT NULL DEFAULT 0)"
    )
    for kind, table in (("message", "messages"), ("segment", "segments"), ("core", "core")):
        conn.execute(
            f"INSERT INTO retired_ids (kind, high) SELECT ?, coalesce(max(id), 0) FROM {table}",
            (kind,),
        )
        conn.execute(
            f"CREATE TRIGGER {table}_retire_id AFTER DELETE ON {table} BEGIN"
            f" UPDATE retired_ids SET high = max(high, OLD.id) WHERE kind = '{kind}'; END"
        )


def _0003_open_turns(conn: sqlite3.Connection) -> None:
    # The rows a turn has written while it is still running (its messages, the segments the
    # window evicted meanwhile). The turn's last transaction deletes them from here; a turn
    # that failed, or whose process died, is taken back by deleting what they name.
    _run(
        conn,
        """
        CREATE TABLE open_turn_rows (
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('message', 'segment')),
            ref_id INTEGER NOT NULL,
            PRIMARY KEY (session_id, kind, ref_id)
        );
        """,
    )


MIGRATIONS: list[Migration] = [
    ("0001_recall", _0001_recall),
    ("0002_ids_never_reused", _0002_ids_never_reused),
    ("0003_open_turns", _0003_open_turns),
]
