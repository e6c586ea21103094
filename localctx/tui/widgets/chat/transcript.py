"""The transcript: user prompts, streamed replies (Markdown), command answers and notices.

Replies stream through Textual's MarkdownStream, which appends to the document and coalesces
fragments when the widget falls behind; re-rendering the whole reply per token is what makes
chat UIs stutter past ~20 tok/s. A prompt longer than PREVIEW_CHARS (a 200 KB paste) is shown
as a preview: all of it goes to the model, but laying out 200 KB of Markdown would freeze the
UI for seconds and tell the reader nothing.

The transcript follows the newest output (Textual's anchor) until the reader scrolls up;
sending a message or a new reply starting brings it back to the bottom (`follow`). It never
takes the keyboard focus: typing always goes to the prompt, and PageUp/PageDown scroll it
from there. Results and errors stay in it as one-line notices (a toast alone vanishes).
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
        self.text = text

    def withdraw(self) -> None:
        """The model was stopped while reading it: it was not sent (and is not stored)."""
        self.add_class("withdrawn")
        shown = preview(self.text).replace("; sent whole to the model)", ")")
        self.update(f"{shown}\n— stopped while the model read it: not sent, not stored")


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


class Transcript(VerticalScroll, can_focus=False):
    """Keeps to the bottom while replies stream, unless the user scrolled up to read."""

    def on_mount(self) -> None:
        self.anchor()

    def follow(self) -> None:
        """Back to the newest output, and keep to it (sending, a new reply, Ctrl+End)."""
        self.anchor()
        self.call_after_refresh(self.scroll_end, animate=False)

    @property
    def following(self) -> bool:
        # Textual releases the anchor when the reader scrolls; it has no public flag for it.
        return self.is_anchored and not getattr(self, "_anchor_released", False)

    async def add(self, widget: Static | Markdown) -> None:
        following = self.following
        await self.mount(widget)
        if following:
            self.follow()

    def add_notice(self, text: str, *, error: bool = False) -> None:
        """A result or an error, kept (from synchronous handlers: the mount is scheduled)."""
        following = self.following
        self.mount(Notice(text, error=error))
        if following:
            self.follow()

    async def start_reply(self) -> Reply:
        """A new reply: the transcript jumps to it and follows it."""
        reply = Reply()
        await self.mount(reply)
        self.follow()
        return reply

    def replies(self) -> list[Reply]:
        return list(self.query(Reply))

    def last_turn(self) -> list[Static | Markdown]:
        """The newest user message and the reply widgets after it (what an edit replaces)."""
        children = list(self.children)
        users = [i for i, w in enumerate(children) if isinstance(w, UserMessage)]
        if not users:
            return []
        at = users[-1]
        tail = [w for w in children[at + 1 :] if isinstance(w, Reply | ReplyFooter)]
        return [children[at], *tail]  # type: ignore[list-item]
