"""What the panels draw, as plain data built from the headless parts' objects (pure).

The gauge reading and the session's memory state come from packages that do not know the UI;
these functions read them by name and tolerate a missing field (drawn as "—"), so a reading
from an older or newer core never breaks the screen. Widgets render only these views.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REGIONS = ("sink", "pinned", "recalled", "window", "free")


@dataclass(frozen=True)
class GaugeView:
    backend: str = "—"
    rss_bytes: int | None = None
    ram_used: int | None = None
    ram_total: int | None = None
    vram_used: int | None = None
    vram_total: int | None = None
    kv_cells: Mapping[str, int] = field(default_factory=dict)  # region -> cells
    n_ctx: int = 0
    kv_bytes: int | None = None  # bytes llama.cpp allocated for the whole cache
    bytes_per_token: float | None = None
    kv_type: str = ""
    tokens_seen: int = 0
    cells_held: int = 0
    evictions: int = 0
    prefill_tps: float | None = None
    decode_tps: float | None = None
    tiers: Mapping[str, int] = field(default_factory=dict)  # store name -> bytes on disk

    @property
    def kv_used_bytes(self) -> int | None:
        if self.bytes_per_token is None:
            return None
        return int(self.cells_held * self.bytes_per_token)


def _as_mapping(reading: Any) -> Mapping[str, Any]:
    if reading is None:
        return {}
    if isinstance(reading, Mapping):
        return reading
    if hasattr(reading, "to_json"):
        return reading.to_json()
    return vars(reading)


def _pick(data: Mapping[str, Any], *names: str) -> Any:
    """The first present, non-None value among dotted names ("kv.cells.sink")."""
    for name in names:
        node: Any = data
        for part in name.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
            if node is None:
                break
        if node is not None:
            return node
    return None


def gauge_view(reading: Any) -> GaugeView:
    """A GaugeReading (or its to_json() dict) -> what the gauge panel draws."""
    d = _as_mapping(reading)
    cells = {}
    for region in REGIONS:
        value = _pick(d, f"kv.cells.{region}", f"kv_cells.{region}", f"kv.regions.{region}")
        if value is None and region == "sink":
            value = _pick(d, "kv.cells.sinks", "kv_cells.sinks", "kv.regions.sinks")
        cells[region] = int(value or 0)
    n_ctx = int(_pick(d, "kv.n_ctx", "kv.cells_total", "n_ctx") or sum(cells.values()))
    held = int(_pick(d, "kv.cells_used", "kv.cells_held", "cells_used") or 0)
    if not held:
        held = sum(v for k, v in cells.items() if k != "free")
    if not cells["free"] and n_ctx:
        cells["free"] = max(n_ctx - held, 0)
    vram = _pick(d, "vram", "gpus")
    vram_used = vram_total = None
    if isinstance(vram, list) and vram:
        vram_used = sum(int(g.get("used", g.get("used_bytes", 0))) for g in vram)
        vram_total = sum(int(g.get("total", g.get("total_bytes", 0))) for g in vram)
    elif isinstance(vram, Mapping):
        vram_used = _pick(vram, "used", "used_bytes")
        vram_total = _pick(vram, "total", "total_bytes")
    tiers = _pick(d, "stores", "store_bytes", "tiers") or {}
    return GaugeView(
        backend=str(_pick(d, "backend.name", "backend") or "—"),
        rss_bytes=_pick(d, "ram.rss", "ram.process_rss", "rss_bytes", "rss"),
        ram_used=_pick(d, "ram.used", "ram.used_bytes", "ram_used"),
        ram_total=_pick(d, "ram.total", "ram.total_bytes", "ram_total"),
        vram_used=vram_used,
        vram_total=vram_total,
        kv_cells=cells,
        n_ctx=n_ctx,
        kv_bytes=_pick(d, "kv.bytes", "kv.total_bytes", "kv_bytes"),
        bytes_per_token=_pick(d, "kv.bytes_per_token", "bytes_per_token"),
        kv_type=str(_pick(d, "kv.type", "kv.type_k", "type_k") or ""),
        tokens_seen=int(_pick(d, "kv.tokens_seen", "tokens_seen") or 0),
        cells_held=held,
        evictions=int(_pick(d, "kv.evictions", "evictions") or 0),
        prefill_tps=_pick(d, "throughput.prefill_tps", "prefill_tps"),
        decode_tps=_pick(d, "throughput.decode_tps", "decode_tps"),
        tiers={str(k): int(v) for k, v in dict(tiers).items() if isinstance(v, int | float)},
    )


@dataclass(frozen=True)
class Snippet:
    source: str  # "src/app.py:10-42" or "session demo · segment 3"
    text: str
    tokens: int | None = None


@dataclass(frozen=True)
class ContextView:
    recalled: tuple[Snippet, ...] = ()
    summary: str = ""
    eviction: str = ""  # one line: which tokens left the window
    eviction_summary: str | None = None  # None: not summarized yet
    pinned: tuple[str, ...] = ()  # core-memory facts (/remember)


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def snippet_of(item: Any) -> Snippet:
    """A recalled item (chunk, message or segment hit) -> source label and text."""
    if isinstance(item, str):
        return Snippet("memory", item)
    source = _get(item, "source", "label")
    if source is None:
        path = _get(item, "path")
        start, end = _get(item, "start_line", "line_start"), _get(item, "end_line", "line_end")
        if path is not None:
            source = f"{path}:{start}-{end}" if start is not None else str(path)
        else:
            kind, ident = _get(item, "kind", "tier") or "memory", _get(item, "id", "seq")
            source = f"{kind} {ident}" if ident is not None else str(kind)
    text = _get(item, "text", "content", "snippet") or ""
    return Snippet(str(source), str(text), _get(item, "tokens", "n_tokens"))


def context_view(session: Any) -> ContextView:
    """What the model sees for the last turn, read from the session (fields may be absent)."""
    if session is None:
        return ContextView()
    recalled = tuple(snippet_of(i) for i in (getattr(session, "last_recall", None) or ()))
    summary = getattr(session, "running_summary", None) or getattr(session, "summary", None)
    eviction = getattr(session, "last_eviction", None)
    line, eviction_summary = "", None
    if eviction is not None:
        segment = _get(eviction, "segment") or eviction
        n = _get(segment, "n_tokens")
        positions = _get(segment, "positions")
        seq = _get(segment, "seq")
        where = f" from positions {positions[0]}–{positions[1]}" if positions else ""
        line = f"#{seq}: {n} tokens{where}" if seq is not None else f"{n} tokens{where}"
        eviction_summary = _get(eviction, "summary")
    pinned = getattr(session, "core_memory", None) or getattr(session, "pinned_facts", None) or ()
    return ContextView(
        recalled=recalled,
        summary=str(summary or ""),
        eviction=line,
        eviction_summary=eviction_summary,
        pinned=tuple(str(_get(p, "text") or p) for p in pinned),
    )
