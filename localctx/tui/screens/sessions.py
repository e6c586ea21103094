"""SessionsScreen (F4, /sessions): the saved conversations, newest first, to pick one.

Each row says what a person needs to recognise a conversation: its name, its newest message,
how long ago it was active and how big it is. The list is read in a thread worker (one SQLite
query, but the UI never waits on a disk). Enter opens the session; Esc goes back.
"""

from __future__ import annotations

import time
from calendar import timegm
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from localctx.tui import parts
from localctx.tui.messages import SessionsListed
from localctx.tui.widgets.gauge.bars import human_bytes

LAST_MESSAGE_CHARS = 36


def age(sqlite_utc: str, now: float | None = None) -> str:
    """`just now`, `5 min ago`, `3 h ago`, `2 days ago` for SQLite's `YYYY-MM-DD HH:MM:SS`."""
    try:
        then = timegm(time.strptime(sqlite_utc[:19], "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return "—"
    seconds = max(0, int((time.time() if now is None else now) - then))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    days = seconds // 86400
    return f"{days} day{'s' if days != 1 else ''} ago"


def session_cells(row: Any, current: str, now: float | None = None) -> tuple[str, ...]:
    """(mark, name, newest message, age, size) for one SessionSummary (pure)."""
    who = {"user": "you: ", "assistant": "ai: "}.get(row.last_role, "")
    last = " ".join(row.last_text.split())
    if len(last) > LAST_MESSAGE_CHARS:
        last = last[: LAST_MESSAGE_CHARS - 1] + "…"
    size = f"{row.messages} msg · {human_bytes(row.text_bytes)}"
    mark = "●" if row.name == current else ""
    return mark, row.name, (who + last) if last else "(empty)", age(row.active_at, now), size


class SessionsScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_none", "Back"),
        Binding("f4", "dismiss_none", "Back", show=False),
    ]

    def __init__(self, current: str, rows: list[Any] | None = None, now: float | None = None):
        super().__init__(id="sessions-screen")
        self.current = current
        self.rows: list[Any] = []
        self._given = rows  # fixed rows and clock (snapshot tests); None: read the store
        self._now = now

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield Static("Sessions · Enter opens · Esc goes back", classes="dialog-title")
            yield DataTable(id="sessions-table", cursor_type="row", zebra_stripes=True)
            yield Static("reading…", id="sessions-note")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("", "session", "newest message", "active", "size")
        table.focus()
        if self._given is not None:
            self.on_sessions_listed(SessionsListed(self._given))
        else:
            self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="sessions")
    def load(self) -> None:
        self.post_message(SessionsListed(parts.list_sessions()))

    def on_sessions_listed(self, message: SessionsListed) -> None:
        self.rows = message.rows
        table = self.query_one(DataTable)
        table.clear()
        now = self._now if self._now is not None else time.time()
        for row in self.rows:
            table.add_row(*session_cells(row, self.current, now))
        note = f"{len(self.rows)} sessions" if self.rows else "no saved sessions yet"
        self.query_one("#sessions-note", Static).update(note)

    @on(DataTable.RowSelected)
    def open_row(self, event: DataTable.RowSelected) -> None:
        if 0 <= event.cursor_row < len(self.rows):
            self.dismiss(self.rows[event.cursor_row].name)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
