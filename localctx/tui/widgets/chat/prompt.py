"""The prompt: multi-line entry with history. Enter sends; Shift/Alt+Enter or Ctrl+J: new line.

Up on the first line and Down on the last line walk the history (so arrows still move the
cursor inside a multi-line draft), and the draft being typed is kept while browsing.
"""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import TextArea

_NEWLINE_KEYS = {"shift+enter", "alt+enter", "ctrl+j", "ctrl+enter"}


class PromptHistory:
    """Sent prompts, oldest first; a cursor that walks them and remembers the draft (pure)."""

    def __init__(self, entries: list[str] | None = None, limit: int = 500) -> None:
        self.entries = list(entries or [])
        self.limit = limit
        self._index: int | None = None  # None: editing the draft
        self._draft = ""

    def push(self, text: str) -> None:
        if text and (not self.entries or self.entries[-1] != text):
            self.entries.append(text)
            del self.entries[: -self.limit]
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
                self._show(recalled, at_end=False)
            return
        if key == "down" and row == self.document.line_count - 1 and not self.selected_text:
            recalled = self.prompt_history.next()
            if recalled is not None:
                event.stop()
                event.prevent_default()
                self._show(recalled, at_end=True)
            return
        await super()._on_key(event)

    def _show(self, text: str, *, at_end: bool) -> None:
        self.load_text(text)
        if at_end:
            self.move_cursor(self.document.end)
        else:
            self.move_cursor((0, len(self.document[0])))

    def take(self) -> str:
        """The prompt's text, cleared from the box and pushed onto the history."""
        text = self.text
        self.prompt_history.push(text.strip())
        self.load_text("")
        return text
