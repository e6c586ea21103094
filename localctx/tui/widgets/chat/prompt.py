"""The prompt: multi-line entry with history. Enter sends; Shift/Alt+Enter or Ctrl+J: new line.

Up on the first line and Down on the last line walk the history (so arrows still move the
cursor inside a multi-line draft), the cursor lands at the end of the recalled prompt (as in a
shell), and the draft being typed is kept while browsing. The history is saved as it grows
(`on_change`), so it survives a restart. A long draft (a paste) shows its size in the border
before it is sent: bytes, an estimate of its tokens, and whether it will push older text out
of the window while it is read.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import events
from textual.message import Message
from textual.widgets import TextArea

from localctx.ingest.tokens import estimate_tokens
from localctx.tui.widgets.gauge.bars import human_bytes, human_count

_NEWLINE_KEYS = {"shift+enter", "alt+enter", "ctrl+j", "ctrl+enter"}
SIZE_NOTE_CHARS = 1_000  # drafts from this long on show their size


class PromptHistory:
    """Sent prompts, oldest first; a cursor that walks them and remembers the draft (pure but
    for `on_change`, called with the entries after each push)."""

    def __init__(
        self,
        entries: list[str] | None = None,
        limit: int = 500,
        on_change: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.entries = list(entries or [])
        self.limit = limit
        self.on_change = on_change
        self._index: int | None = None  # None: editing the draft
        self._draft = ""

    @classmethod
    def persisted(cls) -> PromptHistory:
        """The history saved under the user's home (localctx.tui.state)."""
        from localctx.tui import state

        return cls(state.load_history(), on_change=state.save_history)

    def push(self, text: str) -> None:
        if text and (not self.entries or self.entries[-1] != text):
            self.entries.append(text)
            del self.entries[: -self.limit]
            if self.on_change is not None:
                self.on_change(self.entries)
        self._index = None

    def previous(self, current: str) -> str | None:
        if not self.entries:
            return None
        if self._index is None:
            self._draft, self._index = current, len(self.entries) - 1
        elif self._index > 0:
            self._index -= 1
        else:
            return None
        return self.entries[self._index]

    def next(self) -> str | None:
        if self._index is None:
            return None
        if self._index < len(self.entries) - 1:
            self._index += 1
            return self.entries[self._index]
        self._index = None
        return self._draft


def size_note(text: str, window: int | None) -> str:
    """`20.1 KiB · ≈5.2K tokens · over the 2K window: older text is evicted as it is read`."""
    if len(text) < SIZE_NOTE_CHARS:
        return ""
    tokens = estimate_tokens(text)
    note = f"{human_bytes(len(text.encode('utf-8')))} · ≈{human_count(tokens)} tokens"
    if window and tokens > window:
        note += f" · over the {human_count(window)} window: older text is evicted as it is read"
    return note


class PromptInput(TextArea):
    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, history: PromptHistory | None = None, **kwargs: object) -> None:
        super().__init__(
            soft_wrap=True,
            show_line_numbers=False,
            tab_behavior="focus",
            compact=True,
            highlight_cursor_line=False,
            placeholder="Ask about your code…  (/help for commands, F1 for keys)",
            **kwargs,  # type: ignore[arg-type]
        )
        self.prompt_history = history or PromptHistory()
        self.window: int | None = None  # the sink window, for the size note

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self.border_subtitle = size_note(self.text, self.window)

    async def _on_key(self, event: events.Key) -> None:
        key = event.key
        if key == "enter":
            event.stop()
            event.prevent_default()
            self.post_message(self.Submitted(self.text))
            return
        if key in _NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        row, _ = self.cursor_location
        if key == "up" and row == 0 and not self.selected_text:
            recalled = self.prompt_history.previous(self.text)
            if recalled is not None:
                event.stop()
                event.prevent_default()
                self._show(recalled)
            return
        if key == "down" and row == self.document.line_count - 1 and not self.selected_text:
            recalled = self.prompt_history.next()
            if recalled is not None:
                event.stop()
                event.prevent_default()
                self._show(recalled)
            return
        await super()._on_key(event)

    def _show(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    def take(self) -> str:
        """The prompt's text, cleared from the box and pushed onto the history."""
        text = self.text
        self.prompt_history.push(text.strip())
        self.load_text("")
        return text
