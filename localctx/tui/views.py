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
    kv_used: int | None = None  # bytes the held cells take (SWA-aware, from the sampler)
    bytes_per_token: float | None = None
    kv_type: str = ""
    window: int | None = None  # the sink window's size; None: the whole context
    tokens_seen: int = 0
    cells_held: int = 0
    evictions: int = 0
    fallback_used: bool = False  # evictions had to re-prefill (the cache cannot shift)
    policy: str = ""  # the eviction policy; "" when the reading does not say
    gaps: int = 0  # places a scored policy evicted between kept cells
    prefill_tps: float | None = None
    decode_tps: float | None = None
    tiers: Mapping[str, int] = field(default_factory=dict)  # store name -> bytes on disk

    @property
    def kv_used_bytes(self) -> int | None:
        if self.kv_used is not None:
            return self.kv_used
        if self.bytes_per_token is None:
            return None
        return int(self.cells_held * self.bytes_per_token)

    @property
    def bar_cells(self) -> int:
        """What the KV bar and the figures beside it are measured against: the sink window
        when there is one (it never holds more), else the whole context."""
        return self.window or self.n_ctx

    @property
    def bar_bytes(self) -> int | None:
        """Bytes of `bar_cells` cells (the window's share of the allocation)."""
        if not self.window:
            return self.kv_bytes
        if self.bytes_per_token is None:
            return None
        return int(self.window * self.bytes_per_token)


def _as_mapping(reading: Any) -> Mapping[str, Any]:
    if reading is None:
        return {}
    if isinstance(reading, Mapping):
        return reading
    if hasattr(reading, "to_json"):
        json: Mapping[str, Any] = reading.to_json()
        return json
    fields: Mapping[str, Any] = vars(reading)
    return fields


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
    cells = {r: int(_pick(d, f"kv.regions.{r}", f"kv.cells.{r}") or 0) for r in REGIONS}
    n_ctx = int(_pick(d, "kv.n_ctx") or sum(cells.values()))
    held = int(_pick(d, "kv.cells_used") or 0) or sum(v for k, v in cells.items() if k != "free")
    window = _pick(d, "kv.window")
    if not cells["free"] and (window or n_ctx):
        cells["free"] = max((window or n_ctx) - held, 0)  # the bar's own measure (see bar_cells)
    vram_used = vram_total = None
    vram = _pick(d, "vram")
    if isinstance(vram, list) and vram:
        vram_used = sum(int(g.get("used_bytes", 0)) for g in vram)
        vram_total = sum(int(g.get("total_bytes", 0)) for g in vram)
    elif _pick(d, "unified_memory") is not None:  # Apple: one pool for CPU and GPU
        vram_used = _pick(d, "unified_memory.used_bytes")
        vram_total = _pick(d, "unified_memory.total_bytes")
    tiers = _pick(d, "store_bytes", "stores") or {}
    type_k, type_v = _pick(d, "kv.type_k", "kv.type"), _pick(d, "kv.type_v")
    kv_type = f"{type_k}/{type_v}" if type_v and type_v != type_k else str(type_k or "")
    return GaugeView(
        backend=str(_pick(d, "backend") or "—"),
        rss_bytes=_pick(d, "rss_bytes"),
        ram_used=_pick(d, "ram.used_bytes", "ram.used"),
        ram_total=_pick(d, "ram.total_bytes", "ram.total"),
        vram_used=vram_used,
        vram_total=vram_total,
        kv_cells=cells,
        n_ctx=n_ctx,
        kv_bytes=_pick(d, "kv.total_bytes", "kv.bytes"),
        kv_used=_pick(d, "kv.used_bytes"),
        bytes_per_token=_pick(d, "kv.bytes_per_token"),
        kv_type=kv_type,
        window=window,
        tokens_seen=int(_pick(d, "kv.tokens_seen") or 0),
        cells_held=held,
        evictions=int(_pick(d, "kv.evictions") or 0),
        fallback_used=bool(_pick(d, "kv.fallback_used")),
        policy=str(_pick(d, "kv.policy") or ""),
        gaps=int(_pick(d, "kv.gaps") or 0),
        prefill_tps=_pick(d, "prefill_tps"),
        decode_tps=_pick(d, "decode_tps"),
        tiers={str(k): int(v) for k, v in dict(tiers).items() if isinstance(v, int | float)},
    )


@dataclass(frozen=True)
class Snippet:
    source: str  # "src/app.py:10-42" or "segment s3 · session demo"
    text: str
    tokens: int | None = None
    code: bool = False  # a repository chunk: its lines are kept as they are


@dataclass(frozen=True)
class ContextView:
    recalled: tuple[Snippet, ...] = ()
    summary: str = ""
    eviction: str = ""  # one line: which segment left the window, how many tokens
    eviction_text: str = ""  # how the evicted text began
    eviction_summary: str | None = None  # None: not summarized yet
    summaries_written: bool = True  # False: no memory store, so nothing will be summarized
    pinned: tuple[str, ...] = ()  # core-memory facts (/remember)
    core_tokens: int | None = None  # what core memory takes of its budget, in tokens
    core_budget: int | None = None


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


_KINDS = {"m": "message", "s": "segment", "c": "core"}


def source_label(item: Any) -> str:
    """Where a remembered text came from: "src/app.py:10-42 · main", "segment s3 · demo"."""
    path = _get(item, "path")
    if path:
        start, end = _get(item, "start_line"), _get(item, "end_line")
        label = f"{path}:{start}-{end}" if start is not None else str(path)
        symbol = _get(item, "symbol")
        return f"{label} · {symbol}" if symbol else label
    ident = str(_get(item, "id") or "")
    if ident.startswith("repo:"):
        return ident[len("repo:") :]
    if ident[:1] in _KINDS and ident[1:].isdigit():
        label = f"{_KINDS[ident[0]]} {ident}"
    else:
        label = str(_get(item, "source", "kind") or "memory") + (f" {ident}" if ident else "")
    session = _get(item, "session")
    return f"{label} · session {session}" if session else label


def snippet_of(item: Any) -> Snippet:
    """A recalled item (RecalledItem, RecallHit, ArchivalHit or a plain mapping) -> Snippet."""
    if isinstance(item, str):
        return Snippet("memory", item)
    explicit = _get(item, "label")
    source = str(explicit) if explicit else source_label(item)
    text = _get(item, "text", "content") or ""
    summary = _get(item, "summary")
    if summary:
        text = f"{text}\n(summary: {summary})"
    code = bool(_get(item, "path")) or str(_get(item, "id") or "").startswith("repo:")
    return Snippet(source, str(text), _get(item, "n_tokens", "tokens"), code)


def context_view(session: Any) -> ContextView:
    """What the model sees for the last turn, read from the session (fields may be absent)."""
    if session is None:
        return ContextView()
    recalled = tuple(snippet_of(i) for i in (getattr(session, "last_recall", None) or ()))
    summary = getattr(session, "running_summary", None) or ""
    eviction = getattr(session, "last_eviction", None)
    line, text, eviction_summary = "", "", None
    if eviction is not None:
        ident = _get(eviction, "segment_id", "seq")
        n = _get(eviction, "n_tokens")
        line = f"segment s{ident}: {n} tokens" if ident is not None else f"{n} tokens"
        runs = int(_get(eviction, "runs") or 1)
        if runs > 1:
            line += f" in {runs} scattered runs"
        text = " ".join(str(_get(eviction, "text") or "").split())[:160]
        eviction_summary = _get(eviction, "summary")
    core = getattr(session, "core", None) or ()
    pinned = tuple(str(c[1]) if isinstance(c, tuple) else str(c) for c in core)
    count = getattr(session, "core_tokens", None)
    core_tokens = count() if callable(count) and getattr(session, "store", None) else None
    return ContextView(
        recalled=recalled,
        summary=str(summary),
        eviction=line,
        eviction_text=text,
        eviction_summary=eviction_summary,
        summaries_written=getattr(session, "store", None) is not None,
        pinned=pinned,
        core_tokens=core_tokens,
        core_budget=getattr(session, "core_budget", None) if core_tokens is not None else None,
    )
