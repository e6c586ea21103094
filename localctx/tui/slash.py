"""Slash commands of the chat app: each parsed Command maps to one `_command_NAME` method.

A mixin of LocalctxApp (it uses the app's widgets, workers and settings), kept apart so the
app module holds the lifecycle — loading, turns, gauge, failures, quitting — and this one the
commands. Anything that blocks (planner, stores, ingest) runs in a thread worker and answers
with a CommandAnswered message; bad input is a notice, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from textual import work

from localctx.errors import LocalctxError
from localctx.tui import parts
from localctx.tui.commands import Command, CommandError, help_markdown, parse_command
from localctx.tui.messages import CommandAnswered, IngestFinished, IngestProgressed
from localctx.tui.views import snippet_of
from localctx.tui.widgets.chat.transcript import CommandAnswer, Transcript

if TYPE_CHECKING:
    from localctx.tui.app import LocalctxApp

    _Base = LocalctxApp
else:
    _Base = object


class SlashCommands(_Base):
    async def run_command(self, text: str) -> None:
        parsed = parse_command(text)
        if isinstance(parsed, CommandError):
            self.notify(parsed.message, severity="warning", title="command")
            return
        handler = getattr(self, f"_command_{parsed.name}")
        await handler(parsed)

    async def _answer(self, title: str, markdown: str) -> None:
        await self.widget(Transcript).add(CommandAnswer(title, markdown))

    async def on_command_answered(self, message: CommandAnswered) -> None:
        if not self.chat_visible:
            return
        await self._answer(message.title, message.markdown)
        self._refresh_context()

    def _needs_idle(self, what: str) -> bool:
        if self.generating or self.loading:
            self.notify(f"{what} waits until the reply or load finishes", severity="warning")
            return False
        return True

    async def _command_help(self, command: Command) -> None:
        await self._answer("", help_markdown())

    async def _command_clear(self, command: Command) -> None:
        """A fresh conversation: the current one is saved and stays searchable in memory."""
        if not self._needs_idle("/clear"):
            return
        await self._clear_transcript()
        self.load_model(replace(self.settings, session_name=None), reuse_engine=True)
        self.notify("new conversation; the last one is saved and still recalled from memory")

    async def _command_model(self, command: Command) -> None:
        if self._needs_idle("/model"):
            self._reload(model=command.arg)

    async def _command_kv(self, command: Command) -> None:
        from localctx.kv.types import cache_type

        try:
            cache_type(command.arg)
        except LocalctxError as exc:
            self.notify(str(exc), severity="error", title="/kv")
            return
        if self._needs_idle("/kv"):
            self._reload(kv=command.arg)

    def _reload(self, **changes: Any) -> None:
        carry = list(getattr(self.session, "messages", []))
        try:
            settings = parts.reload_settings(self.settings, **changes)
        except LocalctxError as exc:
            self.notify(str(exc), severity="error", title="reload")
            return
        self.load_model(settings, carry=carry)

    async def _command_window(self, command: Command) -> None:
        if not self._needs_idle("/window"):
            return
        engine = self.settings.engine
        if engine is not None and command.number >= engine.n_ctx:
            self.notify(
                f"a window of {command.number} does not fit a context of {engine.n_ctx}",
                severity="error",
            )
            return
        carry = list(getattr(self.session, "messages", []))
        self.load_model(
            replace(self.settings, window=command.number), reuse_engine=True, carry=carry
        )

    async def _command_session(self, command: Command) -> None:
        if not self._needs_idle("/session"):
            return
        self.switch_session(command.arg)

    @work(thread=True, exclusive=True, exit_on_error=False, group="model", description="session")
    def switch_session(self, name: str) -> None:
        """Save this session (its KV snapshot) and open `name`, resuming it if it exists."""
        self.call_from_thread(self._clear_transcript)
        self._open(replace(self.settings, session_name=name), reuse_engine=True)

    async def _clear_transcript(self) -> None:
        await self.widget(Transcript).remove_children()

    async def _command_plan(self, command: Command) -> None:
        self.run_blocking("/plan", lambda: parts.plan_markdown(self.settings))

    async def _command_remember(self, command: Command) -> None:
        # Both change the live context (decode or rebuild): they take the model like a turn.
        self.run_blocking("/remember", lambda: parts.remember(self.session, command.arg), True)

    async def _command_forget(self, command: Command) -> None:
        self.run_blocking("/forget", lambda: parts.forget(self.session, command.arg), True)

    async def _command_recall(self, command: Command) -> None:
        def recall() -> str:
            hits = [snippet_of(h) for h in parts.recall(self.session, command.arg)]
            if not hits:
                return f"nothing in memory matches '{command.arg}'"
            return "\n".join(f"- **{s.source}**: {' '.join(s.text.split())[:300]}" for s in hits)

        self.run_blocking("/recall", recall)

    async def _command_memory(self, command: Command) -> None:
        self.action_memory()

    async def _command_ingest(self, command: Command) -> None:
        try:
            path = parts.check_repo(command.arg)
        except LocalctxError as exc:
            self.notify(str(exc), severity="error", title="/ingest")
            return
        await self._answer("/ingest", f"indexing `{path}`…")
        self.ingest_repo(path, attach=False)

    async def _command_repo(self, command: Command) -> None:
        try:
            path = parts.check_repo(command.arg)
        except LocalctxError as exc:
            self.notify(str(exc), severity="error", title="/repo")
            return
        await self._answer("/repo", f"indexing and attaching `{path}`…")
        self.ingest_repo(path, attach=True)

    @work(thread=True, exclusive=True, exit_on_error=False, group="ingest", description="ingest")
    def ingest_repo(self, path: Any, attach: bool) -> None:
        def progress(done: int, total: int | None, current: str = "") -> None:
            self.post_message(IngestProgressed(done, total, str(current)))

        summary = parts.ingest(path, progress)
        self.post_message(IngestFinished(summary, path if attach else None))
        if attach:  # the session reopens with the repo: digest pinned, chunks recalled
            self._open(replace(self.settings, repo=path), reuse_engine=True)

    def on_ingest_progressed(self, message: IngestProgressed) -> None:
        if not self.chat_visible:
            return
        total = f"/{message.total}" if message.total else ""
        self._set_activity(f"indexing {message.done}{total} files · {message.current}")

    async def on_ingest_finished(self, message: IngestFinished) -> None:
        if not self.chat_visible:
            return
        self._set_activity("ready")
        await self._answer("ingest", message.summary)
        if message.repo is not None:
            note = f"attaching `{message.repo}`: its digest goes in the pinned region"
            await self._answer("/repo", note)
        self._refresh_context()

    @work(thread=True, exit_on_error=False, group="command", description="command")
    def run_blocking(self, title: str, call: Callable[[], str], uses_model: bool = False) -> None:
        if uses_model:
            with self.model_lock:
                answer = call()
        else:
            answer = call()
        self.post_message(CommandAnswered(title, answer))
