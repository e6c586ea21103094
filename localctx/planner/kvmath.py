"""KV cache bytes, layer by layer, exactly as llama.cpp sizes them. Pure functions.

One KV cell of layer il holds a K row of kv_heads[il] x key_length elements and a V row of
kv_heads[il] x value_length, each stored in its cache type's blocks (q8_0: 34 bytes per 32
elements). llama.cpp pads the cell count to 256, and with swa_full off gives the sliding-window
layers their own cache of min(cells, pad(window + n_ubatch, 256)) cells.

Checked against llama.cpp 0.3.36's own report (tests/test_planner_real.py): SmolLM2-135M at
8,192 cells f16 = 180.00 MiB (30 layers x 3 heads x 64 x 2 x 2 B = 23,040 B a token);
Gemma-3-270M at 8,192 f16 = 24.00 MiB global (3 layers) + 15.00 MiB for 1,024 SWA cells
(window 512 + ubatch 512) on 15 layers; n_ctx 300 -> 512 cells, 1000 -> 1024.
"""

from __future__ import annotations

from dataclasses import dataclass

from localctx.engine.cachetypes import CacheType, cache_type
from localctx.planner.shape import ModelShape

CELL_PAD = 256  # llama.cpp rounds the KV cell count up to a multiple of this
DEFAULT_UBATCH = 512  # the engine's n_batch = n_ubatch


def padded(n: int, pad: int = CELL_PAD) -> int:
    return -(-n // pad) * pad


def kv_cells(
    n_ctx: int, window: int, *, n_ubatch: int = DEFAULT_UBATCH, swa_full: bool = False
) -> tuple[int, int]:
    """(cells of the global cache, cells of the sliding-window cache) for one sequence."""
    cells = padded(n_ctx)
    if not window or swa_full:
        return cells, cells
    return cells, min(cells, padded(window + n_ubatch))


def cell_bytes(shape: ModelShape, il: int, type_k: CacheType, type_v: CacheType) -> int:
    """Bytes one cell (one token) takes in layer il: a K row plus a V row."""
    heads = shape.kv_heads[il]
    return type_k.row_bytes(heads * shape.key_lengths[il]) + type_v.row_bytes(
        heads * shape.value_lengths[il]
    )


@dataclass(frozen=True)
class KvSizing:
    """What llama.cpp will allocate for one context, and what each extra token costs."""

    type_k: str
    type_v: str
    n_ctx: int
    cells: int  # global cache
    swa_cells: int  # sliding-window cache (equal to cells without SWA)
    layer_bytes: tuple[int, ...]  # per layer, for splitting between devices
    bytes_per_token: int  # marginal: what one more token of context adds (global layers)
    swa_bytes_per_cell: int  # one cell across the SWA layers (bounded by swa_cells)

    @property
    def total_bytes(self) -> int:
        return sum(self.layer_bytes)


def kv_sizing(
    shape: ModelShape,
    type_k: str,
    type_v: str | None = None,
    n_ctx: int = 4096,
    *,
    n_ubatch: int = DEFAULT_UBATCH,
    swa_full: bool = False,
) -> KvSizing:
    tk, tv = cache_type(type_k), cache_type(type_v or type_k)
    cells, swa_cells = kv_cells(n_ctx, shape.window, n_ubatch=n_ubatch, swa_full=swa_full)
    per_layer = []
    per_token = swa_per_cell = 0
    for il in range(shape.n_layer):
        b = cell_bytes(shape, il, tk, tv)
        if shape.swa[il] and shape.window and not swa_full:
            per_layer.append(b * swa_cells)
            swa_per_cell += b
        else:
            per_layer.append(b * cells)
            per_token += b
    return KvSizing(
        type_k=tk.name,
        type_v=tv.name,
        n_ctx=n_ctx,
        cells=cells,
        swa_cells=swa_cells,
        layer_bytes=tuple(per_layer),
        bytes_per_token=per_token,
        swa_bytes_per_cell=swa_per_cell,
    )


def holds(shape: ModelShape, type_name: str) -> bool:
    """Whether a cache type's block size divides every K and V head dim (llama.cpp refuses
    the context otherwise; see engine.cachetypes.check_cache_types)."""
    size = cache_type(type_name).block_size
    dims = zip(shape.kv_heads, shape.key_lengths, shape.value_lengths, strict=True)
    return all(k % size == 0 and v % size == 0 for h, k, v in dims if h)
