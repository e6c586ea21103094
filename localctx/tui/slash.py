"""Slash commands of the chat app: each parsed Command maps to one `_command_NAME` method.

A mixin of LocalctxApp (it uses the app's widgets, workers and settings), kept apart so the
app module holds the lifecycle — loading, turns, gauge, failures, quitting — and this one the
commands and the pickers they open. Anything that blocks (planner, stores, ingest) runs in a
thread worker and answers with a CommandAnswered message; whatever holds the model does so
through `_model_work`, so the status line says what it is doing and Esc stops it. Bad input
is a notice that stays in the transcript, never an exception. /kv, /window and /set are
remembered per session (localctx.tui.state) and come back with `--session NAME`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from textual import work

from localctx.errors import LocalctxError
from localctx.tui import parts, state
from localctx.tui.commands import (
    Command,
    CommandError,
    help_markdown,
    parse_command,
    parse_copy,
    parse_set,
)
from localctx.tui.messages import CommandAnswered, IngestFinished, IngestProgressed
from localctx.tui.views import snippet_of
from localctx.tui.widgets.chat.transcript import CommandAnswer, Transcript

if TYPE_CHECKING:  # the app's own type: the mixin is checked as part of a Textual App
    import contextlib
    import threading

    from textual.app import App
    from textual.notifications import SeverityLevel
    from textual.widget import Widget
    from textual.worker import Worker

    from localctx.models.catalogue import ModelEntry
    from localctx.session import Session
    from localctx.tui.commands import CopyTarget
    from localctx.tui.settings import ChatSettings

    _Base = App[str | None]
    W = TypeVar("W", bound=Widget)
else:
    _Base = object

RECALL_CODE_LINES = 12  # lines of a code hit /recall shows (the memory screen shows all)


def recall_markdown(query: str, hits: list[Any]) -> str:
    """`/recall` answer: prose hits on one line each, code hits as code with their lines."""
    if not hits:
        return f"nothing in memory matches '{query}'"
    out = [f"{len(hits)} found for '{query}':", ""]
    for hit in hits:
        s = snippet_of(hit)
        if s.code:
            lines = s.text.strip("\n").splitlines()
            shown = "\n".join(lines[:RECALL_CODE_LINES])
            more = f"\n  … {len(lines) - RECALL_CODE_LINES} more lines" if len(lines) > 12 else ""
            out += [f"- **{s.source}**", "", "  ```", *(f"  {ln}" for ln in shown.split("\n"))]
            out += ["  ```" + more, ""]
        else:
            out.append(f"- **{s.source}**: {' '.join(s.text.split())[:300]}")
    return "\n".join(out)


class SlashCommands(_Base):
    """The slash commands of LocalctxApp (localctx.tui.app), which it is mixed into; what it
    uses of the app is declared here, so this module never imports the app."""

    settings: ChatSettings
    session: Session | None
    loading: bool
    generating: bool

    if TYPE_CHECKING:  # defined by LocalctxApp

        @property
        def chat_visible(self) -> bool: ...
        def widget(self, kind: type[W]) -> W: ...
        def report(
            self, text: str, *, severity: SeverityLevel = "information", title: str = ""
        ) -> None: ...
        def load_model(
            self,
            settings: ChatSettings,
            *,
            reuse_engine: bool = False,
            resolve: bool = False,
            carry: list[Any] | None = None,
            activity: str = "loading the model…",
        ) -> Worker[None]: ...  # a thread worker (@work)
        def _open(
            self,
            settings: ChatSettings,
            *,
            reuse_engine: bool = False,
            resolve: bool = False,
            carry: list[Any] | None = None,
            activity: str = "loading the model…",
        ) -> None: ...
        def _offer_pull(self, entry: ModelEntry | None = None) -> None: ...
        def _work(
            self, activity: str, cancel: threading.Event | None = None
        ) -> contextlib.AbstractContextManager[int]: ...
        def _model_work(
            self, activity: str
        ) -> contextlib.AbstractContextManager[tuple[threading.Event, int]]: ...
        def _set_activity(self, text: str, work_id: int | None = None) -> None: ...
        def _take_notices(self) -> list[str]: ...
        def _refresh_context(self) -> None: ...
        def copy_out(self, target: CopyTarget) -> None: ...
        async def action_regenerate(self) -> None: ...
        def action_edit_last(self) -> None: ...
        def action_memory(self) -> None: ...

    async def run_command(self, text: str) -> None:
        parsed = parse_command(text)
        if isinstance(parsed, CommandError):
            self.report(parsed.message, severity="warning", title="command")
            return
        handler = getattr(self, f"_command_{parsed.name}")
        await handler(parsed)

    async def _answer(self, title: str, markdown: str) -> None:
        transcript = self.widget(Transcript)
        following = transcript.following
        await transcript.mount(CommandAnswer(title, markdown))
        if following:
            transcript.follow()

    async def on_command_answered(self, message: CommandAnswered) -> None:
        if not self.chat_visible:
            return
        await self._answer(message.title, message.markdown)
        for notice in self._take_notices():
            self.report(notice, severity="warning")
        self._refresh_context()

    def _needs_idle(self, what: str) -> bool:
        if self.generating or self.loading:
            self.report(f"{what} waits until the reply or load finishes", severity="warning")
            return False
        return True

    async def _command_help(self, command: Command) -> None:
        await self._answer("", help_markdown())

    # ------------------------------------------------------------------ sessions
    async def _command_clear(self, command: Command) -> None:
        """A fresh conversation, named: the current one is saved and stays findable."""
        if not self._needs_idle("/clear"):
            return
        old = self.settings.session_name or ""
        name = command.arg or parts.new_session_name()
        if name == old:
            self.report(f"`{name}` is this conversation; /clear alone starts a new one")
            return
        await self._clear_transcript()
        settings, kv = self._settings_for(name)
        self._open_session(settings, kv, activity=f"starting conversation {name}…")
        back = f"; `{old}` is saved: /session {old} or F4 brings it back" if old else ""
        self.report(f"new conversation `{name}`{back}")

    async def _command_session(self, command: Command) -> None:
        if not self._needs_idle("/session"):
            return
        if command.arg == self.settings.session_name:
            self.report(f"`{command.arg}` is already open")
            return
        await self._clear_transcript()
        settings, kv = self._settings_for(command.arg)
        self._open_session(settings, kv, activity=f"opening session {command.arg}…")

    async def _command_sessions(self, command: Command) -> None:
        self.action_sessions()

    def action_sessions(self) -> None:
        from localctx.tui.screens.sessions import SessionsScreen

        def chosen(name: str | None) -> None:
            if name:
                self.call_later(self.run_command, f"/session {name}")

        if not isinstance(self.screen, SessionsScreen):
            self.push_screen(SessionsScreen(self.settings.session_name or ""), chosen)

    def _settings_for(self, name: str) -> tuple[Any, str | None]:
        """Settings to open session `name` with: its remembered /window and /set choices, and
        the KV type it was left with (None: keep the loaded engine)."""
        prefs = state.load_prefs(name)
        settings = replace(self.settings, session_name=name)
        if prefs.window:
            settings = replace(settings, window=prefs.window)
        sampling = settings.sampling
        if prefs.max_tokens:
            sampling = replace(sampling, max_tokens=prefs.max_tokens)
        if prefs.temperature is not None:
            sampling = replace(sampling, temperature=prefs.temperature)
        engine = settings.engine
        kv = prefs.kv if engine is not None and prefs.kv and prefs.kv != engine.type_k else None
        return replace(settings, sampling=sampling), kv

    def _open_session(self, settings: Any, kv: str | None, *, activity: str) -> None:
        if kv is None:
            self.load_model(settings, reuse_engine=True, activity=activity)
            return
        try:
            settings = parts.reload_settings(settings, kv=kv)
        except LocalctxError as exc:
            self.report(str(exc), severity="error", title="session")
            self.load_model(settings, reuse_engine=True, activity=activity)
            return
        self.load_model(settings, activity=f"{activity} (KV {kv})")

    async def _clear_transcript(self) -> None:
        await self.widget(Transcript).remove_children()

    def _remember_choice(self, **choice: Any) -> None:
        name = self.settings.session_name
        if name:
            state.save_prefs(name, **choice)

    # ------------------------------------------------------------------ model and settings
    async def _command_model(self, command: Command) -> None:
        if not command.arg:
            self.action_models()
        elif self._needs_idle("/model"):
            self._reload(model=command.arg)

    def action_models(self) -> None:
        from localctx.tui.screens.models import ModelsScreen

        def chosen(entry: Any) -> None:
            if entry is None:
                return
            if entry.installed:
                if self._needs_idle("/model"):
                    self._reload(model=entry.name)
            else:
                self._offer_pull(entry)

        if not isinstance(self.screen, ModelsScreen):
            self.push_screen(ModelsScreen(self.settings), chosen)

    async def _command_kv(self, command: Command) -> None:
        from localctx.engine.cachetypes import cache_type

        try:
            kv = cache_type(command.arg).name
        except LocalctxError as exc:
            self.report(str(exc), severity="error", title="/kv")
            return
        if self._needs_idle("/kv") and self._reload(kv=kv):
            self._remember_choice(kv=kv)

    def _reload(self, **changes: Any) -> bool:
        carry = list(getattr(self.session, "messages", []))
        try:
            settings = parts.reload_settings(self.settings, **changes)
        except LocalctxError as exc:
            self.report(str(exc), severity="error", title="reload")
            return False
        what = ", ".join(f"{k} {v}" for k, v in changes.items())
        self.load_model(settings, carry=carry, activity=f"loading with {what}…")
        return True

    async def _command_window(self, command: Command) -> None:
        if not self._needs_idle("/window"):
            return
        engine = self.settings.engine
        if engine is not None and command.number >= engine.n_ctx:
            self.report(
                f"a window of {command.number} does not fit a context of {engine.n_ctx}",
                severity="error",
            )
            return
        carry = list(getattr(self.session, "messages", []))
        self._remember_choice(window=command.number)
        self.load_model(
            replace(self.settings, window=command.number),
            reuse_engine=True,
            carry=carry,
            activity=f"reopening with a {command.number}-token window…",
        )

    async def _command_set(self, command: Command) -> None:
        parsed = parse_set(command.arg)
        if isinstance(parsed, CommandError):
            self.report(parsed.message, severity="warning", title="/set")
            return
        sampling = self.settings.sampling
        if parsed is not None:
            name, value = parsed
            changes: dict[str, Any] = {name: value}  # /set names a Sampling field
            sampling = replace(sampling, **changes)
            self.settings = replace(self.settings, sampling=sampling)
            self._remember_choice(**{name: value})
        await self._answer(
            "/set",
            f"max_tokens {sampling.max_tokens:,} · temperature {sampling.temperature:g}"
            + (" (greedy)" if sampling.temperature == 0 else "")
            + " · kept with this session",
        )

    async def _command_plan(self, command: Command) -> None:
        self.run_blocking("/plan", lambda: parts.plan_markdown(self.settings))

    # ------------------------------------------------------------------ the last exchange
    async def _command_copy(self, command: Command) -> None:
        target = parse_copy(command.arg)
        if isinstance(target, CommandError):
            self.report(target.message, severity="warning", title="/copy")
            return
        self.copy_out(target)

    async def _command_regenerate(self, command: Command) -> None:
        await self.action_regenerate()

    async def _command_edit(self, command: Command) -> None:
        self.action_edit_last()

    # ------------------------------------------------------------------ memory
    async def _command_remember(self, command: Command) -> None:
        # Both change the live context (decode or rebuild): they take the model like a turn.
        self.run_blocking("/remember", lambda: parts.remember(self.session, command.arg), True)

    async def _command_forget(self, command: Command) -> None:
        self.run_blocking("/forget", lambda: parts.forget(self.session, command.arg), True)

    async def _command_recall(self, command: Command) -> None:
        query = command.arg
        self.run_blocking(
            f"/recall {query}", lambda: recall_markdown(query, parts.recall(self.session, query))
        )

    async def _command_memory(self, command: Command) -> None:
        self.action_memory()

    # ------------------------------------------------------------------ repositories
    async def _command_ingest(self, command: Command) -> None:
        try:
            path = parts.check_repo(command.arg)
        except LocalctxError as exc:
            self.report(str(exc), severity="error", title="/ingest")
            return
        await self._answer("/ingest", f"indexing `{path}`…")
        self.ingest_repo(path, attach=False)

    async def _command_repo(self, command: Command) -> None:
        try:
            path = parts.check_repo(command.arg)
        except LocalctxError as exc:
            self.report(str(exc), severity="error", title="/repo")
            return
        await self._answer("/repo", f"indexing and attaching `{path}`…")
        self.ingest_repo(path, attach=True)

    @work(thread=True, exclusive=True, exit_on_error=False, group="ingest", description="ingest")
    def ingest_repo(self, path: Any, attach: bool) -> None:
        with self._work(f"indexing {path.name}…") as work_id:

            def progress(done: int, total: int | None, current: str = "") -> None:
                self.post_message(IngestProgressed(done, total, str(current), work_id))

            summary = parts.ingest(path, progress)
        self.post_message(IngestFinished(summary, path if attach else None))
        if attach:  # the session reopens with the repo: digest pinned, chunks recalled
            settings = replace(self.settings, repo=path)
            self._open(settings, reuse_engine=True, activity=f"attaching repo {path.name}…")

    def on_ingest_progressed(self, message: IngestProgressed) -> None:
        if not self.chat_visible:
            return
        total = f"/{message.total}" if message.total else ""
        self._set_activity(
            f"indexing {message.done}{total} files · {message.current}", message.work_id
        )

    async def on_ingest_finished(self, message: IngestFinished) -> None:
        if not self.chat_visible:
            return
        await self._answer("ingest", message.summary)
        if message.repo is not None:
            note = f"attaching `{message.repo}`: its digest goes in the pinned region"
            await self._answer("/repo", note)
        self._refresh_context()

    @work(thread=True, exit_on_error=False, group="command", description="command")
    def run_blocking(self, title: str, call: Callable[[], str], uses_model: bool = False) -> None:
        answer: str | None = None
        if uses_model:
            with self._model_work(f"{title}…"):
                answer = call()
        else:
            answer = call()
        if answer is not None:  # None: stopped (Esc) before it could answer
            self.post_message(CommandAnswered(title, answer))
