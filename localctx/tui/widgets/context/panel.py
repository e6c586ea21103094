"""ContextPanel: the recalled snippets with their sources, the latest eviction with its summary
once the model has written it, the running summary, and the pinned facts (most changing first,
so a short terminal still shows what moved this turn).

This is the panel that makes memory trustworthy: the user sees exactly which text was put in
front of the model this turn, not a claim that "memory is on".
"""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group, RenderableType
from rich.text import Text
from textual.geometry import Size
from textual.reactive import reactive
from textual.widget import Widget

from localctx.tui.views import ContextView

SNIPPET_LINES = 3  # lines of each recalled snippet shown; the memory screen shows them whole


class ContextPanel(Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "context--heading",
        "context--source",
        "context--dim",
    }

    view: reactive[ContextView] = reactive(ContextView, layout=True)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """Lines after wrapping: snippets and summaries wrap, and a height counted before
        wrapping would clip the sections below them."""
        console = self.app.console
        lines = console.render_lines(self.render(), console.options.update_width(width), pad=False)
        return len(lines)

    def render(self) -> RenderableType:
        v = self.view
        head = self.get_component_rich_style("context--heading")
        source = self.get_component_rich_style("context--source")
        dim = self.get_component_rich_style("context--dim")
        out: list[RenderableType] = [Text(f"Recalled this turn ({len(v.recalled)})", head)]
        if not v.recalled:
            out.append(Text("nothing recalled", dim))
        for snippet in v.recalled:
            tokens = f" · {snippet.tokens} tok" if snippet.tokens else ""
            out.append(Text(f"▸ {snippet.source}{tokens}", source))
            lines = snippet.text.strip("\n").splitlines()[:SNIPPET_LINES]
            if snippet.code:  # code keeps its lines: cut at the panel's edge, never re-flowed
                out.extend(Text(f"  {ln}", dim, no_wrap=True, overflow="ellipsis") for ln in lines)
            else:
                out.append(Text("\n".join(f"  {ln}" for ln in lines), dim, overflow="ellipsis"))
        out.append(Text(""))
        out.append(Text("Latest eviction", head))
        if not v.eviction:
            out.append(Text("none yet: everything still fits the window", dim))
        else:
            out.append(Text(v.eviction, source))
            if v.eviction_text:
                out.append(Text(f"“{v.eviction_text}…”", dim, overflow="ellipsis"))
            if v.eviction_summary:
                out.append(Text(f"summary: {v.eviction_summary}"))
            elif v.summaries_written:
                out.append(Text("summarizing after this turn…", dim))
            else:
                out.append(Text("not summarized: this session has no memory store", dim))
        out.append(Text(""))
        out.append(Text("Running summary", head))
        out.append(Text(v.summary or "nothing evicted yet", "" if v.summary else dim))
        if v.pinned:
            out.append(Text(""))
            size = (
                f" · {v.core_tokens:,}/{v.core_budget:,} tokens"
                if v.core_tokens is not None and v.core_budget
                else ""
            )
            out.append(Text(f"Pinned facts ({len(v.pinned)}{size})", head))
            out.extend(Text(f"• {fact}") for fact in v.pinned)
        return Group(*out)
