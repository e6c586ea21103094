"""SessionLock: one process at a time on a named session.

Two processes appending to one session interleave their rows (user, user, assistant,
assistant), each answers without the other's turn, and the next resume loads whichever
snapshot was written last: the cache and the stored history disagree. So a named session is
held with an exclusive `flock` on `<home>/locks/<hash of the name>.lock` while it is open. A
second `chat`/`ask --session S` waits up to WAIT_S (a script's previous `ask` may still be
saving its snapshot) and then refuses with SessionBusy (exit 14), naming the holder's pid and
start time. The kernel releases the lock when its process ends, even by kill -9, so a stale
lock cannot outlive its holder. The holder deletes its file on release; a process that locked
a file someone deleted meanwhile sees its inode is no longer the path's and starts again, so
two processes never hold "the" lock on two different files.

Must not: touch the stores (the session decides what the lock guards).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path

from localctx import paths
from localctx.errors import SessionBusy

try:
    import fcntl
except ImportError:  # Windows: no flock; sessions are not locked there
    fcntl = None  # type: ignore[assignment]

WAIT_S = 3.0
_POLL_S = 0.1


class SessionLock:
    def __init__(self, name: str, fd: int | None, path: Path) -> None:
        self.name = name
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, name: str, *, wait: float = WAIT_S) -> SessionLock:
        """Hold session `name`, or raise SessionBusy once `wait` seconds have passed."""
        path = lock_path(name)
        if fcntl is None:
            return cls(name, None, path)
        deadline = time.monotonic() + wait
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise SessionBusy(busy_message(name, path)) from None
                time.sleep(_POLL_S)
                continue
            if _same_file(fd, path):
                break
            os.close(fd)  # its holder deleted it as we locked it: lock the path's file
        holder = {"pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        return cls(name, fd, path)

    @staticmethod
    def check_free(name: str) -> None:
        """Raise SessionBusy now if another process holds `name` (the chat checks before its
        screen opens; the app's worker then acquires it)."""
        SessionLock.acquire(name, wait=0.0).release()

    def release(self) -> None:
        """Idempotent: delete the file while still holding it, then drop the lock."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            if _same_file(fd, self.path):
                self.path.unlink()
        os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> SessionLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        mine, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def lock_path(name: str) -> Path:
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return paths.locks_dir() / f"{digest}.lock"


def busy_message(name: str, path: Path) -> str:
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        holder = {}
    who = (
        f"pid {holder['pid']}, since {holder.get('since', '?')}"
        if isinstance(holder, dict) and "pid" in holder
        else "another process"
    )
    return (
        f"session '{name}' is open in another localctx process ({who}); wait for it to "
        "finish, or use another --session"
    )
