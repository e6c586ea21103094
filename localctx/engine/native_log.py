"""llama.cpp's log, captured instead of printed.

llama.cpp writes hundreds of lines to stderr on every load; localctx keeps them in a ring
buffer (shown with LOCALCTX_DEBUG=1 or in error messages) and reads the figures the product
needs from them — the KV buffer sizes llama.cpp allocated — because the C API exposes no
other way to ask (see patches/README.md).
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import threading
from collections import deque

import llama_cpp

from localctx.engine.base import KvAllocation

_LINES: deque[str] = deque(maxlen=2000)
_LOCK = threading.Lock()
_partial = ""
_count = 0  # lines ever logged, so a mark survives the ring buffer wrapping
_installed = False

# llama_kv_cache: size =   90.00 MiB (  4096 cells,  30 layers,  1/1 seqs),
#                 K (f16):   45.00 MiB, V (f16):   45.00 MiB   (one line in the log)
_KV_SIZE = re.compile(
    r"size\s*=\s*([\d.]+) MiB \(\s*(\d+) cells,.*K \((\w+)\):\s*([\d.]+) MiB, "
    r"V \((\w+)\):\s*([\d.]+) MiB"
)
_MIB = 1024 * 1024


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]  # a ctypes CFUNCTYPE
def _on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    global _partial, _count
    chunk = text.decode("utf-8", errors="replace")
    with _LOCK:
        _partial += chunk
        while "\n" in _partial:
            line, _partial = _partial.split("\n", 1)
            _LINES.append(line)
            _count += 1
            if os.environ.get("LOCALCTX_DEBUG"):
                sys.stderr.write(line + "\n")


def install() -> None:
    """Route llama.cpp's log into the ring buffer (once per process)."""
    global _installed
    if not _installed:
        llama_cpp.llama_log_set(_on_log, ctypes.c_void_p(0))
        _installed = True


def mark() -> int:
    """A position in the log; `since(mark)` returns what was logged after it."""
    with _LOCK:
        return _count


def since(marker: int) -> list[str]:
    with _LOCK:
        n = min(_count - marker, len(_LINES))
        return list(_LINES)[len(_LINES) - n :] if n > 0 else []


def last_error(lines: list[str]) -> str:
    """The most telling line of a failed load, for a one-line error."""
    for line in reversed(lines):
        low = line.lower()
        if "error" in low or "failed" in low or "unsupported" in low:
            return line.split(":", 1)[-1].strip() if ":" in line else line.strip()
    return lines[-1].strip() if lines else "no log"


def kv_allocation(lines: list[str]) -> KvAllocation:
    """Sum the KV caches llama.cpp reported creating (two for SWA models)."""
    total = k = v = 0.0
    cells: list[int] = []
    found: list[str] = []
    for line in lines:
        m = _KV_SIZE.search(line)
        if m and "kv_cache" in line:
            total += float(m.group(1))
            cells.append(int(m.group(2)))
            k += float(m.group(4))
            v += float(m.group(6))
            found.append(line.strip())
    return KvAllocation(
        total_bytes=round(total * _MIB),
        k_bytes=round(k * _MIB),
        v_bytes=round(v * _MIB),
        cells=tuple(cells),
        lines=tuple(found),
    )


def flash_attn_enabled(lines: list[str], *, default: bool) -> bool:
    """What llama.cpp resolved flash attention to ("auto" becomes on or off at context
    creation: 'resolve_fused_ops: Flash Attention enabled' / '... disabled')."""
    for line in reversed(lines):
        low = line.lower()
        if "flash attention enabled" in low:
            return True
        if "flash attention disabled" in low or "flash_attn is not compatible" in low:
            return False
    return default


_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")


def layers_offloaded(lines: list[str]) -> tuple[int, int] | None:
    """(layers on the GPU, layers in all) from llama.cpp's load log ('load_tensors: offloaded
    25/25 layers to GPU'); None when it said nothing (a CPU build offloads none)."""
    for line in reversed(lines):
        match = _OFFLOADED.search(line)
        if match:
            return int(match.group(1)), int(match.group(2))
    return None
