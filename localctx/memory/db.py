"""Open a SQLite store safely: one file per store, WAL, 0600, append-only named migrations.

A migration is a named function; its name is recorded in `_migrations` once applied and an
applied migration is never edited (add a new one instead). A file that is not a SQLite
database, or is corrupt, raises StoreCorrupt and is never overwritten.

A healthy store on a device that refuses writes is not corrupt: `classify` tells a full disk
(StoreFull), a read-only file system or a missing permission (StoreUnwritable) and another
process holding the lock (SessionBusy) from damage (StoreCorrupt), so nobody is told to throw
away a good database. Its messages never quote stored text: SQLite's "Could not decode to
UTF-8" error carries the row's bytes, which may be the user's conversation.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from localctx import paths
from localctx.errors import (
    LocalctxError,
    SessionBusy,
    StoreCorrupt,
    StoreFull,
    StoreUnwritable,
    from_os_error,
)

Migration = tuple[str, Callable[[sqlite3.Connection], None]]

# SQLite's primary result codes (the low byte of sqlite_errorcode).
_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT = 3, 5, 6, 8, 10, 11
_FULL, _CANTOPEN, _AUTH, _NOTADB = 13, 14, 23, 26
_LOW_SPACE = 256 * 1024  # below this free, a failed write is taken for a full disk


def store_path(name: str) -> Path:
    """`<home>/db/<name>.sqlite3`."""
    return paths.db_dir() / f"{name}.sqlite3"


def connect(path: Path, migrations: Sequence[Migration]) -> sqlite3.Connection:
    """Open (creating 0600 if new), check integrity cheaply, and apply pending migrations."""
    new = not path.exists()
    try:
        if new:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
    except OSError as exc:
        raise from_os_error(exc, f"the store {path}") or exc from None
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
    except sqlite3.Error as exc:
        raise classify(exc, path) or StoreCorrupt(
            f"store {path} is not a readable SQLite database ({exc}); "
            "it was left as is — move it away to start fresh"
        ) from None
    for suffix in ("", "-wal", "-shm"):
        side = Path(str(path) + suffix)
        with contextlib.suppress(OSError):  # a store opened on a read-only mount stays so
            if side.exists():
                side.chmod(0o600)
    return conn


def classify(exc: sqlite3.Error, path: Path) -> LocalctxError | None:
    """What a SQLite error means for the user, or None when it is a bug of ours."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    text = str(exc)
    if text.startswith("Could not decode to UTF-8"):  # the rest of the message is row data
        return StoreCorrupt(
            f"store {path} holds text that is not valid UTF-8 (a damaged page); "
            "it was left as is — move it away to start fresh"
        )
    if code in (_CORRUPT, _NOTADB):
        return StoreCorrupt(
            f"store {path} is damaged ({exc}); it was left as is — move it away to start fresh"
        )
    if code in (_BUSY, _LOCKED):
        return SessionBusy(f"store {path} is locked by another localctx process; try again")
    if code == _FULL:
        return _full(path)
    if code in (_READONLY, _CANTOPEN, _PERM, _AUTH, _IOERR):
        return _why_unwritable(path, text)
    return None


def _full(path: Path) -> StoreFull:
    return StoreFull(f"no space left on the device holding {path}: free some space and run again")


def _why_unwritable(path: Path, text: str) -> LocalctxError:
    """Look at the file system to say why SQLite could not open or write `path`."""
    probe = path if path.exists() else path.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return StoreUnwritable(f"cannot open the store {path} ({text})")
    if st.f_flag & os.ST_RDONLY:
        return StoreUnwritable(
            f"the store {path} is on a read-only file system: it is intact; remount it "
            "read-write or set LOCALCTX_HOME to a writable directory"
        )
    if st.f_bavail * st.f_frsize < _LOW_SPACE:
        return _full(path)
    for target in (path, path.parent):
        if target.exists() and not os.access(target, os.W_OK):
            return StoreUnwritable(
                f"no permission to write {target} (the store {path} is intact): fix its "
                "permissions or set LOCALCTX_HOME to a writable directory"
            )
    if path.is_dir():
        return StoreUnwritable(f"the store {path} is a directory, not a database file")
    return StoreUnwritable(f"cannot write the store {path} ({text}); it was left as is")


@contextlib.contextmanager
def guarded(path: Path) -> Iterator[None]:
    """Re-raise a SQLite error the user can act on as its LocalctxError (see `classify`)."""
    try:
        yield
    except sqlite3.Error as exc:
        err = classify(exc, path)
        if err is None:
            raise
        raise err from None


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
