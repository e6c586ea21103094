"""What the panels draw, as plain data built from the headless parts' objects (pure).

The gauge reading (one type, GaugeReading, from the sampler to here) and the session's memory
state come from packages that do not know the UI; these functions turn them into what each
panel draws. Widgets render only these views.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localctx.gauge import GaugeReading
    from localctx.session import Session

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


def gauge_view(reading: GaugeReading | None) -> GaugeView:
    """A GaugeReading (the sampler's, one type from the core to here) -> what the gauge panel
    draws; None (nothing sampled yet) draws dashes."""
    if reading is None:
        return GaugeView()
    kv = reading.kv
    cells = {r: int(kv.regions.get(r, 0)) for r in REGIONS}
    n_ctx = kv.n_ctx or sum(cells.values())
    held = kv.cells_used or sum(v for k, v in cells.items() if k != "free")
    if not cells["free"] and (kv.window or n_ctx):
        cells["free"] = max((kv.window or n_ctx) - held, 0)  # the bar's own measure (bar_cells)
    vram_used = vram_total = None
    if reading.vram:
        vram_used = sum(g.used_bytes for g in reading.vram)
        vram_total = sum(g.total_bytes for g in reading.vram)
    elif reading.unified_memory is not None:  # Apple: one pool for CPU and GPU
        vram_used = reading.unified_memory.used_bytes
        vram_total = reading.unified_memory.total_bytes
    kv_type = f"{kv.type_k}/{kv.type_v}" if kv.type_v and kv.type_v != kv.type_k else kv.type_k
    return GaugeView(
        backend=reading.backend or "—",
        rss_bytes=reading.rss_bytes,
        ram_used=reading.ram.used_bytes,
        ram_total=reading.ram.total_bytes,
        vram_used=vram_used,
        vram_total=vram_total,
        kv_cells=cells,
        n_ctx=n_ctx,
        kv_bytes=kv.total_bytes,
        kv_used=kv.used_bytes,
        bytes_per_token=kv.bytes_per_token,
        kv_type=kv_type,
        window=kv.window,
        tokens_seen=kv.tokens_seen,
        cells_held=held,
        evictions=kv.evictions,
        fallback_used=kv.fallback_used,
        policy=kv.policy,
        gaps=kv.gaps,
        prefill_tps=reading.prefill_tps,
        decode_tps=reading.decode_tps,
        tiers=dict(reading.store_bytes),
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


def context_view(session: Session | None) -> ContextView:
    """What the model sees for the last turn, read from the session."""
    if session is None:
        return ContextView()
    recalled = tuple(snippet_of(i) for i in session.last_recall)
    eviction = session.last_eviction
    line, text, eviction_summary = "", "", None
    if eviction is not None:
        ident, n = eviction.segment_id, eviction.n_tokens
        line = f"segment s{ident}: {n} tokens" if ident is not None else f"{n} tokens"
        if eviction.runs > 1:
            line += f" in {eviction.runs} scattered runs"
        text = " ".join(eviction.text.split())[:160]
        eviction_summary = eviction.summary
    stored = session.store is not None
    core_tokens = session.core_tokens() if stored else None
    return ContextView(
        recalled=recalled,
        summary=session.running_summary,
        eviction=line,
        eviction_text=text,
        eviction_summary=eviction_summary,
        summaries_written=stored,
        pinned=tuple(text for _, text in session.core),
        core_tokens=core_tokens,
        core_budget=session.core_budget if core_tokens is not None else None,
    )
