"""Where localctx keeps its files: one function per directory, one override each.

`LOCALCTX_HOME` moves everything (tests point it at tmp_path); `LOCALCTX_MODELS` moves only the
model files, so tests can keep using the models installed once by the setup script. Directories
are created 0700 because the stores hold the user's conversations and code; the data
directories (home, db, snapshots, locks) are tightened to 0700 when they already exist with
wider permissions, with a one-line notice. A path that cannot be a directory (LOCALCTX_HOME
naming a file) is bad input, said in one line.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import platformdirs

from localctx.errors import BadInput, from_os_error

APP = "localctx"
log = logging.getLogger("localctx.paths")


def data_location() -> Path:
    """The data directory's path, without creating it (for messages about it)."""
    override = os.environ.get("LOCALCTX_HOME")
    return Path(override).expanduser() if override else Path(platformdirs.user_data_dir(APP))


def home() -> Path:
    """The user data directory (stores, snapshots, settings)."""
    path = data_location()
    if os.environ.get("LOCALCTX_HOME") and path.exists() and not path.is_dir():
        raise BadInput(f"LOCALCTX_HOME={path} is not a directory: point it at a directory")
    return _ensure(path, private=True)


def models_dir() -> Path:
    """Where pulled GGUF files live; large, so it may be moved on its own."""
    override = os.environ.get("LOCALCTX_MODELS")
    if override:
        path = Path(override).expanduser()
        if path.exists() and not path.is_dir():
            raise BadInput(f"LOCALCTX_MODELS={path} is not a directory: point it at a directory")
        return _ensure(path)
    if os.environ.get("LOCALCTX_HOME"):
        return _ensure(home() / "models")
    return _ensure(Path(platformdirs.user_cache_dir(APP)) / "models")


def cache_dir() -> Path:
    """Re-creatable downloads (benchmark subjects such as sdists); beside the models."""
    if os.environ.get("LOCALCTX_HOME"):
        return _ensure(home() / "cache")
    return _ensure(Path(platformdirs.user_cache_dir(APP)))


def db_dir() -> Path:
    """SQLite stores, one file per store."""
    return _ensure(home() / "db", private=True)


def snapshots_dir() -> Path:
    """KV-cache snapshots (llama.cpp sequence state files)."""
    return _ensure(home() / "snapshots", private=True)


def locks_dir() -> Path:
    """Lock files of open sessions (one per named session; see localctx.memory.locks)."""
    return _ensure(home() / "locks", private=True)


def _ensure(path: Path, *, private: bool = False) -> Path:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise BadInput(f"{path} is not a directory (a file has its name)") from None
    except OSError as exc:
        raise from_os_error(exc, f"the directory {path}") or exc from None
    if private:
        _tighten(path)
    return path


def _tighten(path: Path) -> None:
    """Data directories hold conversations and code: nobody else may list or read them."""
    try:
        st = path.stat()
        loose = stat.S_IMODE(st.st_mode) & 0o077
        if loose and st.st_uid == os.getuid():
            path.chmod(stat.S_IMODE(st.st_mode) & 0o700)
            log.warning("tightened %s to 0700 (it holds your conversations and code)", path)
    except OSError:
        pass  # a read-only mount: the stores say what is wrong when they are written
