"""Where localctx keeps its files: one function per directory, one override each.

`LOCALCTX_HOME` moves everything (tests point it at tmp_path); `LOCALCTX_MODELS` moves only the
model files, so tests can keep using the models installed once by the setup script. Directories
are created 0700 because the stores hold the user's conversations and code.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "localctx"


def home() -> Path:
    """The user data directory (stores, snapshots, settings)."""
    override = os.environ.get("LOCALCTX_HOME")
    path = Path(override).expanduser() if override else Path(platformdirs.user_data_dir(APP))
    return _ensure(path)


def models_dir() -> Path:
    """Where pulled GGUF files live; large, so it may be moved on its own."""
    override = os.environ.get("LOCALCTX_MODELS")
    if override:
        return _ensure(Path(override).expanduser())
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
    return _ensure(home() / "db")


def snapshots_dir() -> Path:
    """KV-cache snapshots (llama.cpp sequence state files)."""
    return _ensure(home() / "snapshots")


def _ensure(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
