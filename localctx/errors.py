"""User-facing errors: one clear line and a distinct exit code per kind of failure.

Domain modules raise these; the CLI prints `localctx: <message>` to stderr and exits with the
code. Anything else that escapes is a bug and is reported as one (exit 70), never a traceback.
"""

from __future__ import annotations

import errno
from enum import IntEnum


class Exit(IntEnum):
    """Exit codes, stable for scripts (documented in the README)."""

    OK = 0
    FAILURE = 1
    USAGE = 2  # bad flags or a command not available yet
    MODEL_NOT_FOUND = 3  # unknown catalogue name, or a path that does not exist
    BAD_MODEL_FILE = 4  # not GGUF, truncated, or missing metadata we need
    BAD_KV_SETTING = 5  # unknown KV type, or one the model cannot take
    CONTEXT_TOO_LARGE = 6  # n_ctx above the trained context without --force
    DOWNLOAD_FAILED = 7  # network/pip failure or interrupted pull
    CHECKSUM_MISMATCH = 8
    BAD_INPUT = 9  # a text file, path or value the command cannot use
    STORE_CORRUPT = 10  # a SQLite store or snapshot that cannot be read
    ENGINE_FAILED = 11  # llama.cpp refused (context creation, decode)
    STORE_FULL = 12  # no space left on the device that holds the stores (nothing half-written)
    STORE_UNWRITABLE = 13  # a read-only file system, or no permission to write the stores
    SESSION_BUSY = 14  # another localctx process has this session open
    INTERRUPTED = 130
    INTERNAL = 70


class LocalctxError(Exception):
    """An error the user can act on. `str()` is the single line we print."""

    exit_code: Exit = Exit.FAILURE

    def __init__(self, message: str, exit_code: Exit | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ModelNotFound(LocalctxError):
    exit_code = Exit.MODEL_NOT_FOUND


class BadModelFile(LocalctxError):
    exit_code = Exit.BAD_MODEL_FILE


class BadKvSetting(LocalctxError):
    exit_code = Exit.BAD_KV_SETTING


class ContextTooLarge(LocalctxError):
    exit_code = Exit.CONTEXT_TOO_LARGE


class DownloadFailed(LocalctxError):
    exit_code = Exit.DOWNLOAD_FAILED


class ChecksumMismatch(LocalctxError):
    exit_code = Exit.CHECKSUM_MISMATCH


class BadInput(LocalctxError):
    exit_code = Exit.BAD_INPUT


class StoreCorrupt(LocalctxError):
    exit_code = Exit.STORE_CORRUPT


class StoreFull(LocalctxError):
    exit_code = Exit.STORE_FULL


class StoreUnwritable(LocalctxError):
    exit_code = Exit.STORE_UNWRITABLE


class SessionBusy(LocalctxError):
    exit_code = Exit.SESSION_BUSY


class EngineFailed(LocalctxError):
    exit_code = Exit.ENGINE_FAILED


class NotYetAvailable(LocalctxError):
    exit_code = Exit.USAGE


class Cancelled(LocalctxError):
    """The user stopped the work (Esc, Ctrl+C, SIGINT); what was committed before it stays."""

    exit_code = Exit.INTERRUPTED


def from_os_error(exc: OSError, what: str) -> LocalctxError | None:
    """A file-system refusal while writing `what` ("the store /x/recall.sqlite3"), as the
    error the user can act on; None when the errno is not one of those (then it is a bug)."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(f"no space left to write {what}: free some space and run again")
    if exc.errno == errno.EROFS:
        return StoreUnwritable(f"cannot write {what}: the file system is read-only")
    if exc.errno in (errno.EACCES, errno.EPERM):
        where = f" ({exc.filename})" if exc.filename else ""
        return StoreUnwritable(f"no permission to write {what}{where}")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return BadInput(f"cannot create {what}: {reason} ({exc.filename})")
    return None
