"""Is an installed model file the pinned one? Checked by hash once per version of the file.

A same-size corrupt file (a disk error, an interrupted copy by hand) would otherwise load and
answer with broken weights. Hashing costs ~3 s per GB here, so the result is recorded beside
the file (`<file>.verified`: size, mtime, sha256) and a later check is one stat.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the catalogue imports this module to check what it resolves
    from localctx.models.catalogue import ModelEntry

_CHUNK = 1 << 20


def verified(entry: ModelEntry) -> bool:
    """The installed file is the pinned one: right size, and its sha256 checked once per
    version of the file (a pin-less hub entry is taken as the hub delivered it)."""
    path = entry.path
    try:
        st = path.stat()
    except OSError:
        return False
    if entry.size and st.st_size != entry.size:
        return False
    stamp = _stamp_path(path)
    version = f"{st.st_size} {st.st_mtime_ns}"
    try:
        recorded = stamp.read_text(encoding="utf-8").split()
    except OSError:
        recorded = []
    if not entry.sha256:
        # Nothing pinned: the file is the one a completed, checked pull recorded (a copy cut
        # short, or a file put there by hand, has no matching record).
        return recorded[:2] == version.split() or bool(entry.convert)
    if recorded[:2] == version.split() and recorded[2:3] == [entry.sha256]:
        return True
    digest = sha256_file(path)
    if digest != entry.sha256:
        return False
    record_verified(path, digest)
    return True


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def record_verified(path: Path, digest: str) -> None:
    st = path.stat()
    # A read-only models dir: the hash is checked again next time, nothing is lost.
    with contextlib.suppress(OSError):
        _stamp_path(path).write_text(f"{st.st_size} {st.st_mtime_ns} {digest}\n", encoding="utf-8")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()
