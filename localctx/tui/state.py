"""What the chat app keeps between runs beside the memory stores: the prompt history, and each
session's chat choices (/kv, /window, /set), so `--session NAME` comes back as it was left.

Two small JSON files under `<home>/tui/` (0600, like the stores: prompts are the user's
words). They are the app's own: the memory tiers neither read nor need them, and a missing or
unreadable file only means defaults. Writes are atomic (temp file + rename), so a kill mid-write
leaves the previous version.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from localctx import paths

HISTORY_LIMIT = 500


def state_dir() -> Path:
    path = paths.home() / "tui"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, ensure_ascii=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# ------------------------------------------------------------------ prompt history
def history_path() -> Path:
    return state_dir() / "history.json"


def load_history(path: Path | None = None) -> list[str]:
    data = _read(path or history_path())
    if not isinstance(data, list):
        return []
    return [str(x) for x in data if isinstance(x, str)][-HISTORY_LIMIT:]


def save_history(entries: list[str], path: Path | None = None) -> None:
    _write(path or history_path(), entries[-HISTORY_LIMIT:])


# ------------------------------------------------------------------ per-session choices
@dataclass(frozen=True)
class SessionPrefs:
    """A session's chat choices; None: not chosen (the planner's or the command line's)."""

    kv: str | None = None
    window: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None


def prefs_path() -> Path:
    return state_dir() / "sessions.json"


def load_prefs(name: str, path: Path | None = None) -> SessionPrefs:
    data = _read(path or prefs_path())
    raw = data.get(name) if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        return SessionPrefs()
    known = {f.name for f in fields(SessionPrefs)}
    return SessionPrefs(**{k: v for k, v in raw.items() if k in known})


def save_prefs(name: str, **changes: Any) -> SessionPrefs:
    """Record choices for session `name` (merged with what it had); returns the result."""
    path = prefs_path()
    data = _read(path)
    data = data if isinstance(data, dict) else {}
    prefs = replace(load_prefs(name, path), **changes)
    data[name] = {k: v for k, v in asdict(prefs).items() if v is not None}
    _write(path, data)
    return prefs
