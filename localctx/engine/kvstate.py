"""CachedKeys: the K rows llama.cpp holds for sequence 0, read from its own state bytes.

What a scored eviction policy needs (kv/scoring.py): for every cached position, the key
vectors of each layer. llama.cpp has no call that returns them, but `llama_state_seq_get_data`
writes the cache in a stable layout, which this parses (checked on llama-cpp-python 0.3.36):

    u64 magic 0xaf143cd8 | u32 n_stream (1) | u32 cell_count
    per cell: i32 pos, u32 n_seq_id, n_seq_id x i32 seq ids       (cells in cache order)
    u32 v_trans | u32 n_layer
    per layer: i32 ggml type, u64 row bytes, cell_count rows of K  (then V, not read)

Rows come in cache order, not position order: llama.cpp reuses freed cells, so the cell that
held position 3 may hold position 487 after an eviction. `positions` says which is which.
Quantized caches (q8_0, q4_0, ...) are dequantized with the `gguf` package. On a model with a
sliding-window cache (Gemma-3) only the first cache (the full-attention layers) is read.

Cost measured on 2 CPU cores: a state read is ~0.02 s for 500 cells of SmolLM2 (11 MB) and
~0.04 s for 4,000 cells of Qwen2.5-Coder-0.5B at q8_0 (26 MB); the dequantization is numpy.
Must not: decode or change the cache.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from localctx.errors import EngineFailed

STATE_MAGIC = 0xAF143CD8
_F32, _F16, _BF16 = 0, 1, 30


@dataclass(frozen=True)
class CachedKeys:
    """Key rows per layer for the cached cells: `keys[l]` is (n_cells, n_embd_k_gqa) float32,
    row i holding position `positions[i]`."""

    positions: np.ndarray  # int64, one per cell, cache order
    keys: tuple[np.ndarray, ...]  # one array per layer

    def in_position_order(self, n_past: int) -> tuple[np.ndarray, ...]:
        """Each layer's rows reordered so row p holds position p (every position < n_past
        must be cached once: the window keeps positions contiguous)."""
        order = np.full(n_past, -1, dtype=np.int64)
        valid = (self.positions >= 0) & (self.positions < n_past)
        order[self.positions[valid]] = np.nonzero(valid)[0]
        if (order < 0).any():
            raise EngineFailed(f"the cache state does not hold every position below {n_past}")
        return tuple(layer[order] for layer in self.keys)


def parse_keys(data: bytes | memoryview, *, layers: tuple[int, ...] | None = None) -> CachedKeys:
    """Positions and K rows from `llama_state_seq_get_data` bytes; `layers` picks layers by
    index (None: all). Raises EngineFailed on a layout this parser does not know."""
    view = memoryview(data)
    try:
        (magic,) = struct.unpack_from("<Q", view, 0)
        n_stream, n_cells = struct.unpack_from("<II", view, 8)
    except struct.error as exc:
        raise EngineFailed(f"the cache state is too short to read ({len(view)} bytes)") from exc
    if magic != STATE_MAGIC or n_stream != 1:
        raise EngineFailed(
            f"unknown cache state layout (magic {magic:#x}, {n_stream} streams): this "
            "llama.cpp writes its state differently; the scored eviction policies need 0.3.x"
        )
    try:
        return _parse_cells(view, n_cells, layers)
    except struct.error as exc:
        raise EngineFailed("the cache state ends inside its cells or K rows") from exc


def _parse_cells(view: memoryview, n_cells: int, layers: tuple[int, ...] | None) -> CachedKeys:
    off = 16
    positions = np.empty(n_cells, dtype=np.int64)
    for i in range(n_cells):
        pos, n_seq = struct.unpack_from("<iI", view, off)
        positions[i] = pos
        off += 8 + 4 * n_seq
    v_trans, n_layer = struct.unpack_from("<II", view, off)
    off += 8
    del v_trans  # V is not read
    wanted = set(range(n_layer)) if layers is None else {i for i in layers if 0 <= i < n_layer}
    keys: list[np.ndarray] = []
    for layer in range(n_layer):
        ggml_type, row_bytes = struct.unpack_from("<iQ", view, off)
        off += 12
        size = row_bytes * n_cells
        if off + size > len(view):
            raise EngineFailed("the cache state ends inside its cells or K rows")
        if layer in wanted:
            rows = np.frombuffer(view[off : off + size], dtype=np.uint8).reshape(n_cells, -1)
            keys.append(_dequantize(rows, ggml_type))
        off += size
    return CachedKeys(positions=positions, keys=tuple(keys))


def _dequantize(rows: np.ndarray, ggml_type: int) -> np.ndarray:
    if ggml_type == _F32:
        return rows.view(np.float32).astype(np.float32, copy=True)
    if ggml_type == _F16:
        return rows.view(np.float16).astype(np.float32)
    if ggml_type == _BF16:
        wide = rows.view(np.uint16).astype(np.uint32) << 16
        return wide.view(np.float32)
    try:
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize
    except ImportError as exc:  # a required dependency; say what is missing
        raise EngineFailed("reading a quantized KV cache needs the gguf package") from exc
    try:
        qtype = GGMLQuantizationType(ggml_type)
        return np.asarray(dequantize(rows, qtype), dtype=np.float32)
    except (ValueError, NotImplementedError) as exc:
        raise EngineFailed(f"cannot read KV cache rows of ggml type {ggml_type}: {exc}") from exc
