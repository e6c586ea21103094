"""KV bytes per token, read from what llama.cpp reported allocating (never estimated here).

llama.cpp logs one line per KV cache it creates ("size = 45.00 MiB (2048 cells, 30 layers …)");
the engine keeps those lines in its KvAllocation. SWA models (Gemma-3) have two caches: the
global layers with n_ctx cells and the sliding-window layers with fewer, so one token costs a
cell in each: bytes per token is the sum over caches of bytes / cells. Measured here at f16:
SmolLM2-135M 23,040 B (30 layers x 3 KV heads x 64 x 2 x 2 B); Gemma-3-270M 3,072 B global +
15,360 B SWA. The log gives MiB to two decimals, so the figure is exact to ~0.01% from 2,048
cells up, ~0.1% at 256.
"""

from __future__ import annotations

import re

from localctx.engine.base import KvAllocation

_MIB = 1024 * 1024
_CACHE_LINE = re.compile(r"size\s*=\s*([\d.]+) MiB \(\s*(\d+) cells")


def cache_sizes(alloc: KvAllocation) -> list[tuple[int, int]]:
    """(bytes, cells) of each KV cache llama.cpp created."""
    sizes = []
    for line in alloc.lines:
        m = _CACHE_LINE.search(line)
        if m:
            sizes.append((round(float(m.group(1)) * _MIB), int(m.group(2))))
    if not sizes and alloc.cells:
        # No log lines (a fake engine): one cache holding all the bytes.
        sizes = [(alloc.total_bytes, max(alloc.cells))]
    return sizes


def bytes_per_token(alloc: KvAllocation) -> float:
    """KV bytes one token takes across every cache; 0.0 when nothing was reported."""
    return sum(b / c for b, c in cache_sizes(alloc) if c > 0)
