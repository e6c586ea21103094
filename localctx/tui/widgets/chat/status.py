"""The status line: model, backend, KV types, context and window, and what the app is doing."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from localctx.tui.widgets.gauge.bars import human_count


class StatusLine(Static):
    model: reactive[str] = reactive("no model")
    backend: reactive[str] = reactive("")
    kv: reactive[str] = reactive("")
    n_ctx: reactive[int] = reactive(0)
    window: reactive[int | None] = reactive(None)
    activity: reactive[str] = reactive("starting")
    session_name: reactive[str] = reactive("")

    def render(self) -> Text:
        parts = [self.model]
        if self.backend:
            parts.append(self.backend)
        if self.kv:
            parts.append(f"KV {self.kv}")
        if self.n_ctx:
            window = f" · window {human_count(self.window)}" if self.window else ""
            parts.append(f"ctx {human_count(self.n_ctx)}{window}")
        if self.session_name:
            parts.append(f"session {self.session_name}")
        left = "  ·  ".join(parts)
        return Text.assemble((left, "bold"), ("   " + self.activity, "italic"))
