"""MemoryScreen (F3, /memory): browse and search the memory tiers, pin an item, forget one.

The rows come from the session's memory (recall store: messages and evicted segments with
their summaries, each naming its session; archival: repo chunks; core: pinned facts). Searching
and deleting run in a thread worker: a BM25 query over a large archival store can take longer
than a frame; pinning and forgetting hold the model like a turn (they change the live context),
so the chat's status line says so and Esc stops them. The rows have the focus (typing goes
to the search box, Enter there searches, Down comes back to the rows). `Ctrl+K` pins an
excerpt the user can edit, shown against core memory's token budget (the total is in the
title); `Delete` asks first: a forget also removes the summaries built from the item and the
KV snapshots holding it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import Worker, WorkerState

from localctx.tui import parts
from localctx.tui.messages import CommandAnswered, MemoryListed
from localctx.tui.screens.dialogs import ConfirmScreen, PinScreen
from localctx.tui.views import _get, snippet_of

TEXT_COLUMN_CHARS = 120


def row_cells(item: Any) -> tuple[str, str, str, str]:
    """(id, tier, source, first line of text) for one memory item (pure)."""
    snippet = snippet_of(item)
    ident = _get(item, "id")
    tier = _get(item, "tier", "kind") or ("archival" if _get(item, "path") else "memory")
    first = " ".join(snippet.text.split())[:TEXT_COLUMN_CHARS]
    return (str(ident) if ident is not None else "—", str(tier), snippet.source, first)


class MemoryScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back to chat"),
        Binding("f3", "app.pop_screen", "Back", show=False),
        Binding("ctrl+k", "pin", "Pin to core memory"),
        Binding("delete", "forget", "Forget"),
        Binding("ctrl+r", "reload", "Refresh"),
    ]

    def __init__(self, session: Any, rows: list[Any] | None = None) -> None:
        super().__init__(id="memory-screen")
        self.session = session
        self._items: list[Any] = []
        self._initial = rows
        self.core_note = "core memory"

    def compose(self) -> ComposeResult:
        with Vertical(id="memory-body"):
            yield Static("Memory", classes="panel-title", id="memory-title")
            yield Input(
                placeholder="Search memory (Enter)…", id="memory-search", select_on_focus=False
            )
            yield DataTable(id="memory-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="memory-detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("id", "tier", "source", "text")
        if self._initial is not None:
            self.show_rows(self._initial)
        else:
            self.load_rows("")
        table.focus()  # Delete and Ctrl+K act on rows; typing goes to the search (on_key)

    @on(Input.Submitted, "#memory-search")
    def search(self, event: Input.Submitted) -> None:
        self.load_rows(event.value.strip())
        self.query_one(DataTable).focus()

    def on_key(self, event: events.Key) -> None:
        search = self.query_one(Input)
        if self.focused is search:
            if event.key == "down":
                event.stop()
                self.query_one(DataTable).focus()
            return
        if event.is_printable and event.character:
            event.stop()
            search.focus()
            search.insert_text_at_cursor(event.character)

    def action_reload(self) -> None:
        self.load_rows(self.query_one(Input).value.strip())

    @work(thread=True, exclusive=True, exit_on_error=False, group="memory", description="search")
    def load_rows(self, query: str) -> None:
        rows = parts.memory_rows(self.session, query)
        self.post_message(MemoryListed(query, rows, parts.core_total(self.session)))

    def on_memory_listed(self, message: MemoryListed) -> None:
        self.show_rows(message.rows)
        if message.core:
            self.core_note = message.core
            self.query_one("#memory-title", Static).update(f"Memory · {message.core}")
        found = f"{len(message.rows)} items" + (f" for '{message.query}'" if message.query else "")
        self.query_one("#memory-detail", Static).update(found)

    def show_rows(self, rows: list[Any]) -> None:
        self._items = list(rows)
        table = self.query_one(DataTable)
        table.clear()
        for item in self._items:
            table.add_row(*row_cells(item))

    @on(DataTable.RowHighlighted)
    def show_detail(self, event: DataTable.RowHighlighted) -> None:
        if 0 <= event.cursor_row < len(self._items):
            snippet = snippet_of(self._items[event.cursor_row])
            self.query_one("#memory-detail", Static).update(f"{snippet.source}\n{snippet.text}")

    def _selected(self) -> Any | None:
        row = self.query_one(DataTable).cursor_row
        return self._items[row] if 0 <= row < len(self._items) else None

    def action_pin(self) -> None:
        item = self._selected()
        if item is None:
            return

        def pin(text: str | None) -> None:
            if text:
                self.change_memory("remember", text)

        self.app.push_screen(PinScreen(snippet_of(item).text, self.core_note), pin)

    def action_forget(self) -> None:
        item = self._selected()
        ident = _get(item, "id") if item is not None else None
        if ident is None:
            return
        what = " (and the summaries built from it, and KV snapshots that hold it)"
        if str(ident).startswith("c"):
            what = " (a pinned fact: it leaves every context)"

        def forget(yes: bool | None) -> None:
            if yes:
                self.change_memory("forget", str(ident))

        question = f"Forget {ident}{what}? This cannot be undone."
        self.app.push_screen(ConfirmScreen(question, yes="Forget"), forget)

    @work(thread=True, exclusive=True, exit_on_error=False, group="memory", description="edit")
    def change_memory(self, action: str, arg: str) -> None:
        change = parts.remember if action == "remember" else parts.forget
        answer = None
        with self.app._model_work(f"/{action}…"):  # type: ignore[attr-defined]  # re-decodes
            answer = change(self.session, arg)
        if answer is not None:
            self.post_message(CommandAnswered(f"/{action}", answer))
        rows = parts.memory_rows(self.session, "")
        self.post_message(MemoryListed("", rows, parts.core_total(self.session)))

    def on_command_answered(self, message: CommandAnswered) -> None:
        self.notify(message.markdown, title=message.title)  # it bubbles on to the chat, kept

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.notify(str(event.worker.error), title="memory", severity="error")
            event.stop()
