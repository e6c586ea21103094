"""ChatScreen: the layout of the main screen. It holds no state; the app drives its widgets.

Wide terminals get the transcript on the left and the gauge + context side panel on the right;
below ~84 columns the side panel is hidden and a one-line gauge sits above the prompt
(the breakpoint classes are set by the app, the rules live in app.tcss).

The keyboard belongs to the prompt: nothing else on this screen takes the focus, the
transcript scrolls from the prompt (PageUp/PageDown, Ctrl+Home/Ctrl+End, priority bindings
so the prompt's own cursor paging does not swallow them), and a printable key that reaches
the screen from anywhere else is typed into the prompt instead of being lost.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from localctx.tui.widgets.chat.prompt import PromptHistory, PromptInput
from localctx.tui.widgets.chat.status import StatusLine
from localctx.tui.widgets.chat.transcript import Transcript
from localctx.tui.widgets.context.panel import ContextPanel
from localctx.tui.widgets.gauge.panel import GaugeLine, GaugePanel


class ChatScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("pageup", "scroll_transcript('page_up')", "Scroll up", show=False, priority=True),
        Binding("pagedown", "scroll_transcript('page_down')", "Scroll down", show=False,
                priority=True),
        Binding("ctrl+home", "scroll_transcript('home')", "Top", show=False, priority=True),
        Binding("ctrl+end", "scroll_transcript('end')", "Newest", show=False, priority=True),
    ]  # fmt: skip

    def __init__(self, history: PromptHistory) -> None:
        super().__init__(id="chat-screen")
        self._history = history

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="chat"):
                yield Transcript(id="transcript")
                yield GaugeLine(id="gauge-line")
                yield PromptInput(self._history, id="prompt")
            with VerticalScroll(id="side", can_focus=False):
                yield Static("Gauge", classes="panel-title")
                yield GaugePanel(id="gauge")
                yield Static("What the model sees", classes="panel-title")
                yield ContextPanel(id="context")
        yield StatusLine(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(PromptInput).focus()

    def action_scroll_transcript(self, where: str) -> None:
        transcript = self.query_one(Transcript)
        if where == "end":
            transcript.follow()
        elif where == "home":
            transcript.scroll_home(animate=False)
        elif where == "page_up":
            transcript.scroll_page_up(animate=False)
        else:
            transcript.scroll_page_down(animate=False)

    def on_key(self, event: events.Key) -> None:
        prompt = self.query_one(PromptInput)
        if event.is_printable and event.character and self.focused is not prompt:
            event.stop()
            prompt.focus()
            prompt.insert(event.character)
