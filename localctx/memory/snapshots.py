"""KV snapshot store: llama.cpp sequence state on disk, restored instead of re-prefilled.

A snapshot is only worth anything if it is exactly the state the model would compute, so every
file says what it is and proves it: magic, format version, the identity it was made under
(model sha256, llama-cpp-python version, KV types, context, window), the token list it holds
and a sha256 over header and payload. Anything that does not match — wrong model or settings,
truncated, flipped bits, another program's file — is ignored with a notice and the caller
recomputes; a mismatched state is never loaded. (Restoring 1,000 tokens takes ~2 ms; prefilling
them 4-8 s on 2 cores.)

Writes are atomic (temp file 0600, fsync, rename, fsync of the directory): a kill or a full
disk mid-write leaves the previous snapshot as it was. The directory is capped in bytes and
evicts least recently used files (mtime is touched on every load).

Keys are 40 lowercase hex digits (`SnapshotIdentity.key`); a key read from the database is
checked before it names a file, so a damaged or hostile row cannot point outside the
directory.

Must not: decide when to snapshot (the session does) or import llama_cpp (bytes come from the
engine's state_get/state_set).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from localctx import paths

MAGIC = b"LCTXKVS\x00"
FORMAT_VERSION = 1
SUFFIX = ".kvsnap"
DEFAULT_CAP_BYTES = 2 * 1024**3  # 2 GiB: ~90K tokens of f16 KV for SmolLM2-135M
_FIXED = struct.Struct("<8sII")  # magic, version, header length
_KEY = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class SnapshotIdentity:
    """Everything that changes what the state bytes mean; all must match to load."""

    model_sha256: str
    model_name: str
    llama_cpp: str
    type_k: str
    type_v: str
    n_ctx: int
    swa_full: bool
    window: int | None = None

    def key(self, tokens: Sequence[int]) -> str:
        """model + settings + token-prefix hash: the file name of a snapshot."""
        h = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode())
        h.update(_tokens_digest(tokens).encode())
        return h.hexdigest()[:40]


@dataclass(frozen=True)
class Snapshot:
    key: str
    tokens: list[int]
    data: bytes | memoryview  # a view into the file's buffer when loaded (no second copy)
    meta: dict[str, Any] = field(default_factory=dict)


def llama_cpp_version() -> str:
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return "unknown"


def _tokens_digest(tokens: Sequence[int]) -> str:
    return hashlib.sha256(struct.pack(f"<{len(tokens)}i", *tokens)).hexdigest()


def encode(
    identity: SnapshotIdentity, tokens: Sequence[int], data: bytes, meta: dict[str, Any]
) -> bytes:
    """The file bytes (pure): fixed header, JSON header, sha256(header + payload), payload."""
    head, payload = encode_parts(identity, tokens, data, meta)
    return head + payload


def encode_parts(
    identity: SnapshotIdentity, tokens: Sequence[int], data: bytes, meta: dict[str, Any]
) -> tuple[bytes, bytes]:
    """(everything before the payload, the payload): written one after the other, so saving
    a 1 GiB state never holds a second copy of it."""
    header = json.dumps(
        {
            "identity": asdict(identity),
            "tokens": list(tokens),
            "payload_len": len(data),
            "meta": meta,
            "created": time.time(),
        },
        sort_keys=True,
    ).encode()
    digest = hashlib.sha256(header)
    digest.update(data)
    return _FIXED.pack(MAGIC, FORMAT_VERSION, len(header)) + header + digest.digest(), data


def decode(
    blob: bytes | bytearray, identity: SnapshotIdentity
) -> tuple[list[int], bytes | memoryview, dict[str, Any]] | str:
    """(tokens, payload, meta), or the reason the bytes cannot be used (pure). The payload of
    a bytearray is a view into it, not a copy (a loaded state is held once)."""
    if len(blob) < _FIXED.size or blob[:8] != MAGIC:
        return "not a localctx snapshot"
    _, version, hlen = _FIXED.unpack_from(blob)
    if version != FORMAT_VERSION:
        return f"snapshot format {version}, this build reads {FORMAT_VERSION}"
    start = _FIXED.size
    if len(blob) < start + hlen + 32:
        return "truncated"
    view = memoryview(blob)
    header_bytes = bytes(view[start : start + hlen])
    stored = bytes(view[start + hlen : start + hlen + 32])
    payload = (
        view[start + hlen + 32 :] if isinstance(blob, bytearray) else blob[start + hlen + 32 :]
    )
    digest = hashlib.sha256(header_bytes)
    digest.update(payload)
    if digest.digest() != stored:
        return "checksum mismatch (truncated or corrupt)"
    header = json.loads(header_bytes)
    if header.get("payload_len") != len(payload):
        return "truncated"
    saved = header.get("identity", {})
    wanted = asdict(identity)
    diffs = [k for k in wanted if saved.get(k) != wanted[k]]
    if diffs:
        return "made under other settings (" + ", ".join(diffs) + ")"
    return list(header["tokens"]), payload, dict(header.get("meta", {}))


class SnapshotStore:
    def __init__(self, directory: Path | None = None, *, cap_bytes: int = DEFAULT_CAP_BYTES):
        self.dir = directory or paths.snapshots_dir()
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.cap_bytes = cap_bytes
        self.notices: list[str] = []
        self._sweep_temp_files()

    def path(self, key: str) -> Path:
        """The file of a valid key; ValueError for anything else (never a path outside)."""
        if not is_key(key):
            raise ValueError(f"not a snapshot key: {key[:48]!r}")
        return self.dir / f"{key}{SUFFIX}"

    def save(
        self,
        identity: SnapshotIdentity,
        tokens: Sequence[int],
        data: bytes,
        meta: dict[str, Any] | None = None,
    ) -> str | None:
        """Write atomically; returns the key, or None with a notice (disk full, read-only)."""
        key = identity.key(tokens)
        parts = encode_parts(identity, tokens, data, meta or {})
        try:
            _atomic_write(self.path(key), *parts)
        except OSError as exc:
            self.notices.append(f"KV snapshot not saved ({exc.strerror or exc}); kept the old one")
            return None
        self._enforce_cap(keep=key)
        return key

    def load(
        self, key: str, identity: SnapshotIdentity, *, missing_ok: bool = True
    ) -> Snapshot | None:
        """The snapshot under `key` if it is intact and made under `identity`, else None.

        A missing file is silent when the caller only hoped for one (a prefix snapshot) and a
        notice when it was promised (`missing_ok=False`: a session's own snapshot).
        """
        if not is_key(key):
            self.notices.append(f"KV snapshot key {key[:48]!r} is not a snapshot key; ignored")
            return None
        path = self.path(key)
        try:
            blob = _read_into_bytearray(path)
        except FileNotFoundError:
            if not missing_ok:
                self.notices.append(f"KV snapshot {key[:12]} is missing; recomputing")
            return None
        except OSError as exc:
            self.notices.append(f"KV snapshot {key[:12]} unreadable ({exc}); recomputing")
            return None
        try:
            result = decode(blob, identity)
        except (ValueError, KeyError, TypeError) as exc:
            result = f"unreadable header ({type(exc).__name__})"
        if isinstance(result, str):
            self.notices.append(f"KV snapshot {key[:12]} ignored: {result}; recomputing")
            return None
        tokens, payload, meta = result
        if identity.key(tokens) != key:
            self.notices.append(f"KV snapshot {key[:12]} ignored: its tokens do not match its key")
            return None
        os.utime(path)  # LRU: a load counts as a use
        return Snapshot(key, tokens, payload, meta)

    def find(self, identity: SnapshotIdentity, tokens: Sequence[int]) -> Snapshot | None:
        """The snapshot of exactly this token prefix under this identity, if one is stored."""
        return self.load(identity.key(tokens), identity)

    def delete(self, key: str) -> bool:
        """Remove a snapshot; False when there was none. Never raises: something that is not
        a snapshot file under its name (a directory) is left, with a notice."""
        if not is_key(key):
            return False
        try:
            self.path(key).unlink()
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            self.notices.append(
                f"old KV snapshot {key[:12]} not deleted ({exc.strerror or exc}); it is unused"
            )
            return False

    def forget_where(self, holds: Callable[[dict[str, Any]], bool]) -> list[str]:
        """Delete every snapshot whose meta satisfies `holds` (e.g. it contains a forgotten id).

        A file whose header cannot be read is deleted too: it can never be loaded anyway, and
        it might hold what the user asked to forget.
        """
        removed = []
        for path in self.files():
            meta = _read_meta(path)
            if meta is None or holds(meta):
                path.unlink(missing_ok=True)
                removed.append(path.stem)
        return removed

    def files(self) -> list[Path]:
        """Snapshot files (a directory or a link under a snapshot's name is none)."""
        return sorted(p for p in self.dir.glob(f"*{SUFFIX}") if p.is_file() and not p.is_symlink())

    def stats(self) -> dict[str, int]:
        files = self.files()
        return {"snapshots": len(files), "snapshot_bytes": sum(p.stat().st_size for p in files)}

    def _enforce_cap(self, keep: str) -> None:
        files = sorted(self.files(), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for path in files:
            if total <= self.cap_bytes:
                break
            if path.stem == keep:
                continue
            total -= path.stat().st_size
            path.unlink(missing_ok=True)

    def _sweep_temp_files(self) -> None:
        """Temp files of writers that died (kill -9 mid-write) are garbage, never snapshots."""
        for tmp in self.dir.glob(".*.tmp"):
            pid = tmp.name.rsplit(".", 2)[-2]
            if pid.isdigit() and _alive(int(pid)) and int(pid) != os.getpid():
                continue
            tmp.unlink(missing_ok=True)


def is_key(key: object) -> bool:
    return isinstance(key, str) and _KEY.fullmatch(key) is not None


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as f:
            fixed = f.read(_FIXED.size)
            magic, _, hlen = _FIXED.unpack(fixed)
            if magic != MAGIC:
                return None
            return dict(json.loads(f.read(hlen)).get("meta", {}))
    except (OSError, ValueError, struct.error):
        return None


def _read_into_bytearray(path: Path) -> bytearray:
    """The whole file in one buffer, read in place (read_bytes() then slicing held ~2x)."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
    return buf if got == size else buf[:got]


def _atomic_write(path: Path, *parts: bytes) -> None:
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        for part in parts:
            view = memoryview(part)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new, never half
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def model_sha256(path: Path) -> str:
    """sha256 of a model file, cached by (path, size, mtime): hashing 253 MB takes ~1 s."""
    stat = path.stat()
    cache_file = paths.snapshots_dir() / "model-hashes.json"
    tag = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if isinstance(cache, dict) and isinstance(cache.get(tag), str):
        return str(cache[tag])
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    cache = cache if isinstance(cache, dict) else {}
    cache[tag] = h.hexdigest()
    with contextlib.suppress(OSError):  # a cache only: the next start hashes again
        _atomic_write(cache_file, json.dumps(cache).encode())
    return h.hexdigest()
