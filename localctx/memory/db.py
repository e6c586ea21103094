"""Open a SQLite store safely: one file per store, WAL, 0600, append-only named migrations.

A migration is a named function; its name is recorded in `_migrations` once applied and an
applied migration is never edited (add a new one instead). A file that is not a SQLite
database, or is corrupt, raises StoreCorrupt and is never overwritten.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from localctx import paths
from localctx.errors import StoreCorrupt

Migration = tuple[str, Callable[[sqlite3.Connection], None]]


def store_path(name: str) -> Path:
    """`<home>/db/<name>.sqlite3`."""
    return paths.db_dir() / f"{name}.sqlite3"


def connect(path: Path, migrations: Sequence[Migration]) -> sqlite3.Connection:
    """Open (creating 0600 if new), check integrity cheaply, and apply pending migrations."""
    new = not path.exists()
    if new:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    try:
        conn = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            conn.close()
            raise StoreCorrupt(f"store {path} failed its integrity check ({ok}); it was left as is")
        _migrate(conn, migrations)
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupt(
            f"store {path} is not a readable SQLite database ({exc}); "
            "it was left as is — move it away to start fresh"
        ) from None
    for suffix in ("", "-wal", "-shm"):
        side = Path(str(path) + suffix)
        if side.exists():
            side.chmod(0o600)
    return conn


def _migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations ("
        " name TEXT PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT (datetime('now')))"
    )
    for name, apply in migrations:
        # One explicit transaction per migration, all or nothing: Python's sqlite3 does not
        # open one before DDL by itself, so a kill mid-migration would leave half a schema.
        # IMMEDIATE also makes a second process opening the same new file wait, then skip.
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone()
            if row is None:
                apply(conn)
                conn.execute("INSERT INTO _migrations (name) VALUES (?)", (name,))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
