"""QueryCapture: the newest query vectors of every layer, taken from llama.cpp's graph.

The `snapkv` and `h2o` eviction policies (kv/attention.py) need what the model's latest
tokens attend to; llama.cpp does not expose attention weights (and with flash attention, the
default for a quantized V cache, never forms them). It does call the context's eval callback
for every graph node: this one asks for the nodes named `Qcur-<layer>` whose op is ROPE (the queries
after RoPE, [head_dim, n_head, n_tokens] float32), copies the newest `keep` rows of each, and
tags them with their positions. Attention is then recomputed from these queries and the keys
read from the cache (engine/kvstate.py), at eviction time only.

Cost: the callback can only be set when the context is created, and ggml then calls it for
every node (~970 per token on SmolLM2's 30 layers); so it is installed only when the engine is
created for `--evict snapkv|h2o` (EngineSettings.capture_queries). The callback is C
(engine/qcapture.c), compiled once with the machine's C compiler into the cache directory on
first use: from Python each call is a ctypes transition that takes the GIL (decode ~20% slower
on SmolLM2, 2 CPU cores, with every node read; ~7% even when it returns at once; a TUI thread
beside it makes any per-node Python callback far worse). Without a compiler, or with
LOCALCTX_QUERY_CAPTURE=python, the Python callback below does the same work, said once in
the log. Only the batches that reach `from_position` (set by the policy to just below its
window: the queries that will vote at the next eviction) read names and copy rows; one-token
decode batches arm only for the last `keep` tokens before the window's end. Must not raise:
an exception inside a ctypes callback is printed and lost.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("localctx.engine")
SOURCE = Path(__file__).with_name("qcapture.c")

DEFAULT_KEEP = 32  # SnapKV's observation window


class _TensorHead(ctypes.Structure):
    """The first fields of ggml's struct ggml_tensor (ggml.h): type, buffer, ne, nb."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * 4),
        ("nb", ctypes.c_size_t * 4),
    ]


@dataclass(frozen=True)
class RecentQueries:
    """Per layer, the newest queries: `layers[l]` is (n, n_head, head_dim); `positions` (n,)
    the positions they were decoded at (the same for every layer)."""

    positions: np.ndarray
    layers: dict[int, np.ndarray]


class QueryCapture:
    def __init__(self, ggml: Any, keep: int = DEFAULT_KEEP) -> None:
        self.keep = keep
        self._ggml = ggml
        ggml.ggml_get_name.restype = ctypes.c_char_p
        ggml.ggml_get_name.argtypes = [ctypes.c_void_p]
        ggml.ggml_op_desc.restype = ctypes.c_char_p
        ggml.ggml_op_desc.argtypes = [ctypes.c_void_p]
        ggml.ggml_nbytes.restype = ctypes.c_size_t
        ggml.ggml_nbytes.argtypes = [ctypes.c_void_p]
        ggml.ggml_backend_tensor_get.restype = None
        ggml.ggml_backend_tensor_get.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_size_t,
        ]
        self._lock = threading.Lock()
        self._rows: dict[int, np.ndarray] = {}
        self._positions = np.zeros(0, dtype=np.int64)
        self._batch_positions = np.zeros(0, dtype=np.int64)
        self.from_position = 0  # capture only in batches that reach this position
        self._armed = True
        self.native = NativeCallback.load(ggml, keep)

    @property
    def c_callback(self) -> tuple[int, int] | None:
        """(function pointer, user data) of the C callback, or None: use `callback`."""
        return None if self.native is None else self.native.pointers

    # ---------------------------------------------------------------- engine side
    def begin_batch(self, pos0: int, n: int) -> None:
        """The batch about to be decoded covers positions [pos0, pos0 + n)."""
        self._batch_positions = np.arange(pos0, pos0 + n, dtype=np.int64)
        # One token at a time (decode) reaches the window only one position further, so only
        # the last `keep` tokens before it vote; a batch may be the last before an eviction
        # anywhere within a batch of the window's end.
        reach = self.from_position + (self.keep if n == 1 else 0)
        self._armed = pos0 + n > reach
        if self.native is not None:
            self.native.arm(self._armed)

    def end_batch(self) -> None:
        """The batch was decoded: take what the C callback copied (nothing to do in Python)."""
        if self.native is None or not self._armed:
            return
        for layer, rows in self.native.taken():
            self._store(layer, rows)

    def callback(self, tensor: int, ask: bool, _user: Any) -> bool:
        if not self._armed:
            return False
        try:
            name = self._ggml.ggml_get_name(tensor)
            if not name.startswith(b"Qcur-"):
                return False
            if ask:
                return bool(self._ggml.ggml_op_desc(tensor) == b"ROPE")
            self._take(tensor, int(name[5:]))
        except Exception:
            return False
        return True

    def _take(self, tensor: int, layer: int) -> None:
        head = _TensorHead.from_address(tensor)
        if head.type != 0:  # queries are float32
            return
        d, n_head, n_tok = int(head.ne[0]), int(head.ne[1]), int(head.ne[2])
        nbytes = int(self._ggml.ggml_nbytes(tensor))
        if d * n_head * n_tok * 4 != nbytes:
            return  # not a contiguous [d, n_head, n_tok] tensor
        take = min(self.keep, n_tok)
        row = d * n_head * 4
        out = np.empty((take, n_head, d), dtype=np.float32)
        self._ggml.ggml_backend_tensor_get(
            tensor, out.ctypes.data, (n_tok - take) * row, take * row
        )
        self._store(layer, out)

    def _store(self, layer: int, out: np.ndarray) -> None:
        """Add one layer's newest rows of this batch, (take, n_head, head_dim), to the window."""
        take = len(out)
        with self._lock:
            if layer == 0:  # the first layer of a batch: its positions join the window
                positions = self._batch_positions[-take:]
                self._positions = np.concatenate((self._positions, positions))[-self.keep :]
            old = self._rows.get(layer)
            if old is not None and old.shape[1:] == out.shape[1:]:
                out = np.concatenate((old, out))
            self._rows[layer] = out[-self.keep :]

    # ---------------------------------------------------------------- policy side
    def recent(self) -> RecentQueries | None:
        with self._lock:
            if not self._rows or len(self._positions) == 0:
                return None
            n = len(self._positions)
            layers = {i: r[-n:] for i, r in self._rows.items() if len(r) >= n}
            return RecentQueries(positions=self._positions.copy(), layers=layers)

    def clear(self) -> None:
        """Forget what was captured (the cache's positions moved: an eviction shifted them)."""
        with self._lock:
            self._rows.clear()
            self._positions = np.zeros(0, dtype=np.int64)

    def truncate(self, n_past: int) -> None:
        """The cache's tail from n_past was removed: queries decoded there are gone too."""
        with self._lock:
            keep = self._positions < n_past
            if keep.all():
                return
            self._positions = self._positions[keep]
            for layer, rows in list(self._rows.items()):
                if len(rows) == len(keep):
                    self._rows[layer] = rows[keep]
                else:  # out of step (a batch stopped half-way): drop it
                    del self._rows[layer]


class NativeCallback:
    """qcapture.c loaded: its state block, the pointers ggml gets, the rows it copied."""

    def __init__(self, lib: ctypes.CDLL, ggml: Any, keep: int) -> None:
        self._lib = lib
        lib.qc_state_size.restype = ctypes.c_size_t
        lib.qc_max_layers.restype = ctypes.c_int
        lib.qc_reset.argtypes = [ctypes.c_void_p]
        lib.qc_free.argtypes = [ctypes.c_void_p]
        n = lib.qc_max_layers()
        size_t, ptr = ctypes.sizeof(ctypes.c_size_t), ctypes.sizeof(ctypes.c_void_p)
        if lib.qc_state_size() != 4 * ptr + 8 + 12 * n + 2 * size_t * n:
            raise OSError("qcapture.c's state layout is not the one this module reads")
        self._state = ctypes.create_string_buffer(lib.qc_state_size())
        self._addr = ctypes.addressof(self._state)
        fns = [
            ggml.ggml_get_name,
            ggml.ggml_op_desc,
            ggml.ggml_nbytes,
            ggml.ggml_backend_tensor_get,
        ]
        head = (ctypes.c_void_p * 4).from_address(self._addr)
        for i, fn in enumerate(fns):
            head[i] = ctypes.cast(fn, ctypes.c_void_p).value
        self._flags = (ctypes.c_int * 2).from_address(self._addr + 4 * ptr)  # [armed, keep]
        self._flags[1] = keep
        base = self._addr + 4 * ptr + 8  # after the 4 functions and the 2 ints
        self._rows = (ctypes.c_int * n).from_address(base)
        self._n_head = (ctypes.c_int * n).from_address(base + 4 * n)
        self._dim = (ctypes.c_int * n).from_address(base + 8 * n)
        self._bufs = (ctypes.c_void_p * n).from_address(base + 12 * n + size_t * n)
        self.pointers = (ctypes.cast(lib.qc_callback, ctypes.c_void_p).value or 0, self._addr)

    def arm(self, on: bool) -> None:
        self._flags[0] = int(on)
        if on:  # a fresh batch: forget the rows of the last armed one
            self._lib.qc_reset(self._addr)

    def taken(self) -> list[tuple[int, np.ndarray]]:
        out = []
        for layer, rows in enumerate(self._rows):
            if rows:
                shape = (rows, self._n_head[layer], self._dim[layer])
                ptr = ctypes.cast(self._bufs[layer], ctypes.POINTER(ctypes.c_float))
                out.append((layer, np.ctypeslib.as_array(ptr, shape=shape).copy()))
        return out

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown
            self._lib.qc_free(self._addr)

    @classmethod
    def load(cls, ggml: Any, keep: int) -> NativeCallback | None:
        """The C callback, compiled on first use; None (the Python callback) when it cannot
        be built here or LOCALCTX_QUERY_CAPTURE=python asks for Python."""
        if os.environ.get("LOCALCTX_QUERY_CAPTURE") == "python":
            return None
        try:
            path = _built()
            return cls(ctypes.CDLL(str(path)), ggml, keep) if path else None
        except (OSError, AttributeError) as exc:
            log.warning("query capture runs in Python (slower): %s", exc)
            return None


_BUILT: dict[str, Path | None] = {}


def _built() -> Path | None:
    """qcapture.c as a shared library in the cache directory (built once per source and
    platform), or None with one warning when no C compiler is found or it fails."""
    code = SOURCE.read_bytes()
    tag = hashlib.sha256(code + sys.platform.encode() + os.uname().machine.encode()).hexdigest()
    if tag in _BUILT:
        return _BUILT[tag]
    from localctx.paths import cache_dir

    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    out = cache_dir() / "native" / f"qcapture-{tag[:16]}{suffix}"
    if not out.exists():
        cc = os.environ.get("CC") or next(
            (c for c in ("cc", "gcc", "clang") if shutil.which(c)), None
        )
        if cc is None:
            log.warning("query capture runs in Python (slower): no C compiler (cc) found")
            _BUILT[tag] = None
            return None
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
        done = subprocess.run(
            [cc, "-O2", "-shared", "-fPIC", str(SOURCE), "-o", str(tmp)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            tmp.unlink(missing_ok=True)
            first = (done.stderr.strip().splitlines() or ["no output"])[0]
            log.warning("query capture runs in Python (slower): %s failed: %s", cc, first)
            _BUILT[tag] = None
            return None
        os.replace(tmp, out)
    _BUILT[tag] = out
    return out
