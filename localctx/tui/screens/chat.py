"""ChatScreen: the layout of the main screen. It holds no state; the app drives its widgets.

Wide terminals get the transcript on the left and the gauge + context side panel on the right;
below ~84 columns the side panel is hidden and a one-line gauge sits above the prompt
(the breakpoint classes are set by the app, the rules live in app.tcss).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from localctx.tui.widgets.chat.prompt import PromptHistory, PromptInput
from localctx.tui.widgets.chat.status import StatusLine
from localctx.tui.widgets.chat.transcript import Transcript
from localctx.tui.widgets.context.panel import ContextPanel
from localctx.tui.widgets.gauge.panel import GaugeLine, GaugePanel


class ChatScreen(Screen[None]):
    def __init__(self, history: PromptHistory) -> None:
        super().__init__(id="chat-screen")
        self._history = history

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="chat"):
                yield Transcript(id="transcript")
                yield GaugeLine(id="gauge-line")
                yield PromptInput(self._history, id="prompt")
            with VerticalScroll(id="side"):
                yield Static("Gauge", classes="panel-title")
                yield GaugePanel(id="gauge")
                yield Static("What the model sees", classes="panel-title")
                yield ContextPanel(id="context")
        yield StatusLine(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(PromptInput).focus()
