"""ModelsScreen (F5, /model alone): the catalogue's models, installed and pullable, with their
size and whether they fit this machine, to switch to one.

The fit comes from the planner (GGUF header only, no weights loaded) for installed models, at
the context in use; a model not pulled yet has no header here, so its download size is shown
against free memory instead. Planning reads files, so it runs in a thread worker. Enter on an
installed model reloads with it; on a pullable one it offers the pull first.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from localctx.tui import parts
from localctx.tui.messages import ModelsListed
from localctx.tui.widgets.gauge.bars import human_bytes


def model_cells(entry: Any, fit: str, current: str | None) -> tuple[str, ...]:
    mark = "●" if entry.name == current else ""
    where = "installed" if entry.installed else f"pull ({entry.source})"
    size = human_bytes(entry.size) if entry.size else "—"
    return mark, entry.name, size, where, fit


class ModelsScreen(ModalScreen[Any]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_none", "Back"),
        Binding("f5", "dismiss_none", "Back", show=False),
    ]

    def __init__(self, settings: Any) -> None:
        super().__init__(id="models-screen")
        self.settings = settings
        self.rows: list[tuple[Any, str]] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            title = "Models · Enter switches (or pulls) · Esc goes back"
            yield Static(title, classes="dialog-title")
            yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
            yield Static("planning…", id="models-note")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("", "model", "size", "", "fit here")
        table.focus()
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="models")
    def load(self) -> None:
        self.post_message(ModelsListed(parts.list_models(self.settings)))

    def on_models_listed(self, message: ModelsListed) -> None:
        self.rows = message.rows
        table = self.query_one(DataTable)
        table.clear()
        current = self.settings.model_name
        for entry, fit in self.rows:
            table.add_row(*model_cells(entry, fit, current))
        ctx = self.settings.engine.n_ctx if self.settings.engine is not None else None
        at = f" (fit at the context in use, {ctx:,} tokens)" if ctx else ""
        self.query_one("#models-note", Static).update(f"{len(self.rows)} models{at}")

    @on(DataTable.RowSelected)
    def choose(self, event: DataTable.RowSelected) -> None:
        if 0 <= event.cursor_row < len(self.rows):
            self.dismiss(self.rows[event.cursor_row][0])

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
