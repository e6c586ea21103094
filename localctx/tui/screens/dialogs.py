"""Small dialogs the memory screen asks with: confirm a forget, and choose what to pin.

Why ask: `Delete` used to forget at once (with the summaries built from the item, and every KV
snapshot holding it: there is no undo), and `Ctrl+K` pinned a whole message, 20 KB once, into
core memory, which is in every context and never trimmed. The pin dialog offers an excerpt
(the opening sentences, whitespace collapsed), editable, with its estimated size beside what
core memory already holds.
"""

from __future__ import annotations

import re
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from localctx.ingest.tokens import estimate_tokens

PIN_EXCERPT_CHARS = 300
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def pin_excerpt(text: str, limit: int = PIN_EXCERPT_CHARS) -> str:
    """The opening of `text` to pin: whole sentences up to `limit` characters when there are
    any, else the first `limit` characters (pure)."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = [m.start() for m in _SENTENCE_END.finditer(flat) if m.start() <= limit]
    return flat[: cut[-1]] if cut else flat[:limit].rstrip() + "…"


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; `y`/Enter says yes, `n`/Esc no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog"):
            yield Static(self.question, id="confirm-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="confirm-yes")
                yield Button("No (n)", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PinScreen(ModalScreen[str | None]):
    """Edit the excerpt to pin; Enter pins it, Esc pins nothing."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, text: str, core_note: str) -> None:
        super().__init__()
        self.text = text
        self.core_note = core_note

    def compose(self) -> ComposeResult:
        excerpt = pin_excerpt(self.text)
        with Vertical(id="pin-dialog", classes="dialog"):
            yield Static(
                "Pin to core memory (in every context, never trimmed)", classes="dialog-title"
            )
            yield Input(excerpt, id="pin-text")
            yield Static(self._size_line(excerpt), id="pin-size")

    def _size_line(self, text: str) -> str:
        whole = f" of {len(self.text):,} characters" if len(self.text) > len(text) else ""
        return (
            f"≈{estimate_tokens(text):,} tokens ({len(text):,} characters{whole}) · "
            f"{self.core_note} · Enter pins · Esc cancels"
        )

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Changed, "#pin-text")
    def resized(self, event: Input.Changed) -> None:
        self.query_one("#pin-size", Static).update(self._size_line(event.value))

    @on(Input.Submitted, "#pin-text")
    def pin(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
