"""QueryCapture: the newest query vectors of every layer, taken from llama.cpp's graph.

The `snapkv` eviction policy (kv/attention.py) needs what the model's latest tokens attend
to; llama.cpp does not expose attention weights (and with flash attention, the default for a
quantized V cache, never forms them). It does call the context's eval callback for every
graph node: this one asks for the nodes named `Qcur-<layer>` whose op is ROPE (the queries
after RoPE, [head_dim, n_head, n_tokens] float32), copies the newest `keep` rows of each, and
tags them with their positions. Attention is then recomputed from these queries and the keys
read from the cache (engine/kvstate.py), at eviction time only.

Cost: the callback can only be set when the context is created, and ggml then calls it for
every node (~970 per token on SmolLM2's 30 layers) from Python; so it is installed only when
the engine is created for `--evict snapkv` (EngineSettings.capture_queries). Only the batches
that reach `from_position` (set by the policy to just below its window: the queries that
will vote at the next eviction) read names and copy rows; elsewhere the callback returns at
once. Measured on SmolLM2, 2 CPU cores: decode ~20% slower with every node read, ~7% with
the callback returning at once. Must not raise: an exception inside a ctypes callback is
printed and lost.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

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
        self.calls = 0

    # ---------------------------------------------------------------- engine side
    def begin_batch(self, pos0: int, n: int) -> None:
        """The batch about to be decoded covers positions [pos0, pos0 + n)."""
        self._batch_positions = np.arange(pos0, pos0 + n, dtype=np.int64)
        self._armed = pos0 + n > self.from_position

    def callback(self, tensor: int, ask: bool, _user: Any) -> bool:
        if not self._armed:
            return False
        self.calls += 1
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
