"""GaugePanel (the side panel) and GaugeLine (its one-line form on narrow terminals).

Both draw a GaugeView; neither samples anything. Colours come from component classes styled in
app.tcss, so themes and the snapshot tests see the same palette.

The KV bar and the bytes beside it are measured against the same thing: the sink window when
there is one (the cache never holds more than the window), else the whole context; the bytes
llama.cpp allocated for the whole context are a separate, labelled line. `seen` and
`evictions` count over the session (a rebuild starts a new window, not a new count).
"""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group, RenderableType
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from localctx.tui.views import REGIONS, GaugeView
from localctx.tui.widgets.gauge.bars import human_bytes, human_count, split_columns

_REGION_LABELS = {
    "sink": "sink",
    "pinned": "pinned",
    "recalled": "recalled",
    "window": "window",
    "free": "free",
}


class _GaugeBase(Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "gauge--label",
        "gauge--dim",
        "gauge--used",
        "gauge--process",
        "gauge--empty",
        *(f"gauge--kv-{r}" for r in REGIONS),
    }

    view: reactive[GaugeView] = reactive(GaugeView, layout=False)
    generating: reactive[bool] = reactive(False)

    def style(self, name: str) -> str:
        return str(self.get_component_rich_style(f"gauge--{name}"))

    def kv_bar(self, width: int) -> Text:
        v = self.view
        values = [v.kv_cells.get(r, 0) for r in REGIONS]
        bar = Text()
        for region, cols in zip(REGIONS, split_columns(values, width), strict=True):
            glyph = "░" if region == "free" else "█"
            bar.append(glyph * cols, self.style(f"kv-{region}"))
        if not bar.plain:
            bar.append("░" * width, self.style("empty"))
        return bar

    def meter(self, used: int | None, total: int | None, share: int | None, width: int) -> Text:
        """Used / total as a bar; `share` (this process) drawn first in its own colour."""
        if not used or not total:
            return Text("░" * width, self.style("empty"))
        share = min(share or 0, used)
        cols = split_columns([share, used - share, max(total - used, 0)], width)
        return Text.assemble(
            ("█" * cols[0], self.style("process")),
            ("█" * cols[1], self.style("used")),
            ("░" * cols[2], self.style("empty")),
        )


class GaugePanel(_GaugeBase):
    """RAM, VRAM, the KV cache by region, tokens, evictions, tok/s, tier sizes."""

    # Its height follows its lines (a VRAM line, the fallback note and the tiers come and
    # go); a reading arrives at most a few times a second, so the layout pass is cheap.
    view: reactive[GaugeView] = reactive(GaugeView, layout=True)

    def render(self) -> RenderableType:
        v, width = self.view, max(self.size.width - 1, 10)
        label, dim = self.style("label"), self.style("dim")
        bar_width = width
        lines: list[RenderableType] = []

        ram_used = f"{human_bytes(v.ram_used)} / {human_bytes(v.ram_total)}"
        lines.append(Text.assemble(("RAM    ", label), (ram_used, "")))
        lines.append(self.meter(v.ram_used, v.ram_total, v.rss_bytes, bar_width))
        lines.append(Text(f"this process {human_bytes(v.rss_bytes)}", dim))
        if v.vram_total:
            vram = f"{human_bytes(v.vram_used)} / {human_bytes(v.vram_total)}"
            lines.append(Text.assemble(("VRAM   ", label), (vram, "")))
            lines.append(self.meter(v.vram_used, v.vram_total, None, bar_width))
        else:
            lines.append(Text.assemble(("VRAM   ", label), ("none", dim), (f" · {v.backend}", dim)))

        kv_title = f"KV {v.kv_type}".strip() + " "
        of = "window" if v.window else "context"
        used = f"{human_bytes(v.kv_used_bytes)} of {human_bytes(v.bar_bytes)} ({of})"
        lines.append(Text.assemble((kv_title, label), (used, "")))
        lines.append(self.kv_bar(bar_width))
        legend = Text()
        for i, region in enumerate(REGIONS):
            cells = v.kv_cells.get(region, 0)
            legend.append("■ ", self.style(f"kv-{region}"))
            legend.append(f"{_REGION_LABELS[region]:<9}{human_count(cells):>6}", dim)
            legend.append("\n" if i % 2 else "   ")
        lines.append(legend)
        bpt = f"{v.bytes_per_token:,.0f} B/token" if v.bytes_per_token else "— B/token"
        window = f" · window {human_count(v.window)}" if v.window else " · no window"
        lines.append(Text(bpt + window + f" · ctx {human_count(v.n_ctx)}", dim))
        lines.append(Text(f"{human_bytes(v.kv_bytes)} allocated for the whole ctx", dim))
        if v.fallback_used:
            lines.append(Text("cache cannot shift: evictions re-prefill", self.style("label")))

        lines.append(Text(""))
        lines.append(
            Text.assemble(
                ("tokens ", label),
                (f"{human_count(v.tokens_seen)} seen · {human_count(v.cells_held)} held", ""),
            )
        )
        policy = f" · {v.policy}" if v.policy else ""
        gaps = f" · {v.gaps} gap{'s' if v.gaps != 1 else ''}" if v.gaps else ""
        lines.append(Text.assemble(("evictions ", label), (f"{v.evictions}{policy}{gaps}", "")))
        pre = f"{v.prefill_tps:.0f}" if v.prefill_tps else "—"
        dec = f"{v.decode_tps:.1f}" if v.decode_tps else "—"
        lines.append(Text.assemble(("tok/s ", label), (f"prefill {pre} · decode {dec}", "")))
        if v.tiers:
            lines.append(Text("tiers on disk", label))
            for name, size in v.tiers.items():
                lines.append(Text(f"  {name} {human_bytes(size)}", dim))
        return Group(*lines)


class GaugeLine(_GaugeBase):
    """The gauge in one line, shown instead of the panel when the terminal is narrow."""

    def render(self) -> RenderableType:
        v = self.view
        head = Text("KV ", self.style("label"))
        of = " window" if v.window else " ctx"
        tail = Text(
            f" {human_count(v.cells_held)}/{human_count(v.bar_cells)}{of}"
            f" · RAM {human_bytes(v.rss_bytes)}"
            + (f" · {v.decode_tps:.0f} tok/s" if v.decode_tps else "")
            + (f" · ev {v.evictions}" if v.evictions else ""),
            self.style("dim"),
        )
        bar_width = max(self.size.width - len(head) - len(tail), 4)
        return Text.assemble(head, self.kv_bar(bar_width), tail)
