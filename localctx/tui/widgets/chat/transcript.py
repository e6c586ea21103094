"""The transcript: user prompts, streamed replies (Markdown), command answers and notices.

Replies stream through Textual's MarkdownStream, which appends to the document and coalesces
fragments when the widget falls behind; re-rendering the whole reply per token is what makes
chat UIs stutter past ~20 tok/s. A prompt longer than PREVIEW_CHARS (a 200 KB paste) is shown
as a preview: all of it goes to the model, but laying out 200 KB of Markdown would freeze the
UI for seconds and tell the reader nothing.
"""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

PREVIEW_CHARS = 2_000


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """The text as shown in the transcript: whole, or its head and a line saying how much."""
    if len(text) <= limit:
        return text
    kib = len(text.encode("utf-8")) / 1024
    lines = text.count("\n") + 1
    return f"{text[:limit]}\n… ({kib:,.0f} KiB, {lines:,} lines in all; sent whole to the model)"


class UserMessage(Static):
    def __init__(self, text: str) -> None:
        super().__init__(preview(text), markup=False, classes="message user")


class Reply(Markdown):
    """One assistant reply. `write` streams; `finish` closes the stream and adds a footer."""

    def __init__(self) -> None:
        super().__init__("", classes="message reply")
        self._stream: MarkdownStream | None = None
        self.text = ""

    async def write(self, fragment: str) -> None:
        if not fragment:
            return
        if self._stream is None:
            self._stream = Markdown.get_stream(self)
        self.text += fragment
        await self._stream.write(fragment)

    async def finish(self) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None


class ReplyFooter(Static):
    """Figures of a finished turn, one dim line under the reply."""

    def __init__(self, text: str, *, failed: bool = False) -> None:
        classes = "reply-footer failed" if failed else "reply-footer"
        super().__init__(text, markup=False, classes=classes)


class CommandAnswer(Markdown):
    def __init__(self, title: str, markdown: str) -> None:
        if not title:
            body = markdown
        elif "\n" in markdown.strip():
            body = f"**{title}**\n\n{markdown}"
        else:
            body = f"**{title}** · {markdown}"  # one-line answers stay one line
        super().__init__(body, classes="message command")


class Notice(Static):
    def __init__(self, text: str, *, error: bool = False) -> None:
        super().__init__(text, markup=False, classes="notice error" if error else "notice")


class Transcript(VerticalScroll):
    """Keeps to the bottom while replies stream, unless the user scrolled up to read."""

    def on_mount(self) -> None:
        self.anchor()

    async def add(self, widget: Static | Markdown) -> None:
        await self.mount(widget)
        self.anchor()

    async def start_reply(self) -> Reply:
        reply = Reply()
        await self.add(reply)
        return reply
