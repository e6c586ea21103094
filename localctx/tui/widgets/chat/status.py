"""The status line: what the model is doing first, then model, backend, KV types, context and
window, repository and session.

The state comes first because it is what changes and what people look for; at 60 columns the
line is cut at its end, and the end is what changes least. `ready` is only ever shown when no
worker holds the model (the app sets `busy`).
"""

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
    busy: reactive[bool] = reactive(True)
    session_name: reactive[str] = reactive("")
    repo: reactive[str] = reactive("")

    def render(self) -> Text:
        parts = [self.model]
        if self.backend:
            parts.append(self.backend)
        if self.kv:
            parts.append(f"KV {self.kv}")
        if self.n_ctx:
            window = f" · window {human_count(self.window)}" if self.window else ""
            parts.append(f"ctx {human_count(self.n_ctx)}{window}")
        if self.repo:
            parts.append(f"repo {self.repo}")
        if self.session_name:
            parts.append(f"session {self.session_name}")
        state = ("● " if self.busy else "○ ") + self.activity
        return Text.assemble(
            (state, "bold yellow" if self.busy else "bold green"),
            ("  │  ", "dim"),
            ("  ·  ".join(parts), "bold"),
            no_wrap=True,
            overflow="ellipsis",
        )
