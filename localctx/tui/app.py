"""LocalctxApp: the chat app — owns the loaded engine and session, runs every blocking call in
a thread worker, and turns the workers' messages into widget updates.

Threads and the model: llama.cpp contexts are not thread-safe, so one worker at a time uses
the model — a turn, the summaries written after it, /remember and /forget (they re-decode the
pinned region), loading and session switches all hold `model_lock`, through `_model_work`,
which also hands the session the cancel event (Esc, Ctrl+C, Ctrl+Q stop any of them within
one batch) and posts WorkStarted / WorkProgressed / WorkFinished: the status line says what is
happening, with `n/N tokens · ETA` for long prefills, and says `ready` only when nothing is.
The gauge sampler never takes the lock (it reads Python-side state only), so reading the gauge
cannot slow a reply. Swapping or closing the engine also takes `_engine_lock`, which the
sampler holds while it reads, so a reading never touches a freed context. Failures of any
worker arrive in one Worker.StateChanged handler and become a notice that stays in the
transcript; the transcript is never lost.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.worker import Worker, WorkerState

from localctx import turns
from localctx.engine.base import ChatMessage, Engine, Sampling
from localctx.errors import BadInput, Cancelled, LocalctxError
from localctx.progress import Progress, describe
from localctx.tui import parts
from localctx.tui.clipboard import code_blocks, describe_copy, write_fallback
from localctx.tui.commands import CopyTarget, is_command
from localctx.tui.messages import (
    ContextChanged,
    GaugeSampled,
    GenerationFinished,
    GenerationStarted,
    ModelLoaded,
    PromptWithdrawn,
    SegmentEvicted,
    SessionSaved,
    TokensGenerated,
    TurnFigures,
    WorkFinished,
    WorkProgressed,
    WorkStarted,
)
from localctx.tui.screens.chat import ChatScreen
from localctx.tui.screens.help import HelpScreen
from localctx.tui.screens.memory import MemoryScreen
from localctx.tui.screens.pull import PullScreen
from localctx.tui.settings import ChatSettings
from localctx.tui.slash import SlashCommands
from localctx.tui.streaming import TokenBatcher
from localctx.tui.views import context_view, gauge_view
from localctx.tui.widgets.chat.prompt import PromptHistory, PromptInput
from localctx.tui.widgets.chat.status import StatusLine
from localctx.tui.widgets.chat.transcript import (
    Notice,
    Reply,
    ReplyFooter,
    Transcript,
    UserMessage,
)
from localctx.tui.widgets.context.panel import ContextPanel
from localctx.tui.widgets.gauge.panel import GaugeLine, GaugePanel
from localctx.turns import TurnResult

if TYPE_CHECKING:  # the session is imported where it is built (parts): it loads the tiers
    from textual.notifications import SeverityLevel

    from localctx.models.catalogue import ModelEntry
    from localctx.session import Session

W = TypeVar("W", bound=Widget)  # what `widget` finds on the chat screen

# Closing the engine while a worker still decodes would free memory it is using; on exit we
# wait this long for the model lock. Every model worker stops within one batch once asked,
# so only a model still loading in llama.cpp (which cannot be stopped) can take this long.
_TURN_STOP_TIMEOUT = 30.0
SUMMARIES_PER_TURN = 2
# A resumed session redraws its newest messages only: each is a Markdown layout (~ms each),
# and a long history would hold the first frame for seconds; the rest is a search away.
RESUMED_MESSAGES_SHOWN = 40
REGENERATE_TEMPERATURE = 0.8  # a regenerated answer is sampled: greedy would repeat itself
EDITING = "editing your last message · Enter sends it in its place · Esc keeps the old one"


class LocalctxApp(SlashCommands, App[str | None]):
    """Returns (from run()) a line to print after exit, e.g. why the session was not saved."""

    CSS_PATH = "app.tcss"
    TITLE = "localctx"
    # Textual declares these per instance (an app may set its own), so no ClassVar here.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (84, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS = [(0, "-short"), (24, "-tall")]  # noqa: RUF012
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Stop", show=False),
        Binding("ctrl+c", "cancel", "Stop", priority=True, show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "help", "Help"),
        Binding("f2", "toggle_gauge", "Gauge"),
        Binding("f3", "memory", "Memory"),
        Binding("f4", "sessions", "Sessions"),
        Binding("f5", "models", "Models"),
        Binding("ctrl+o", "copy_reply", "Copy reply", show=False),
        Binding("ctrl+g", "copy_code", "Copy code", show=False),
        Binding("ctrl+r", "regenerate", "Regenerate", show=False),
        Binding("ctrl+up", "edit_last", "Edit last", show=False),
    ]

    def __init__(
        self,
        settings: ChatSettings,
        *,
        engine: Engine | None = None,
        engine_factory: parts.EngineFactory | None = None,
        session: Session | None = None,
        session_factory: parts.SessionFactory | None = None,
        sampler_factory: parts.SamplerFactory | None = None,
        history: PromptHistory | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.engine: Engine | None = engine
        self.session: Session | None = session
        self.sampler: parts.Sampler | None = None
        self._engine_factory = engine_factory
        self._session_factory = session_factory or parts.default_session
        self._sampler_factory = sampler_factory or parts.default_sampler
        self._history = history or PromptHistory()
        self.model_lock = threading.Lock()  # one user of the model at a time (see above)
        self._engine_lock = threading.Lock()
        self._cancel: threading.Event | None = None  # stops the work holding the model
        self._background: threading.Event | None = None  # set while summaries run after a turn
        self._owned_engine: Engine | None = None  # loaded here, so closed here
        self._reply: Reply | None = None
        self._sampling = False
        self._last_sample = 0.0
        self._streamed_tokens = 0
        self._work_ids = itertools.count(1)
        self._activities: dict[int, str] = {}  # work id -> what it is doing (newest last)
        self._turn_work = 0
        self._turn_figures: TurnFigures | None = None
        self._save_gave_up = False
        self.editing = False
        self.generating = False
        self.loading = False
        self.readings = 0  # gauge readings drawn (tests wait on it)

    # ------------------------------------------------------------------ layout and start
    def get_default_screen(self) -> ChatScreen:
        return ChatScreen(self._history)

    def _chat_screen(self) -> ChatScreen:
        for screen in self.screen_stack:
            if isinstance(screen, ChatScreen):
                return screen
        raise RuntimeError("the chat screen is not mounted")

    def widget(self, kind: type[W]) -> W:
        return self._chat_screen().query_one(kind)

    @property
    def chat_visible(self) -> bool:
        """False while the app shuts down: late worker messages then have nothing to draw."""
        return self.is_running and any(isinstance(s, ChatScreen) for s in self.screen_stack)

    @property
    def busy(self) -> bool:
        """Something holds the model or indexes a repository: the status is not `ready`."""
        return bool(self._activities)

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        # The default screen composes after the app mounts; start once its widgets exist.
        self.call_after_refresh(self._start)

    def _start(self) -> None:
        if not self.settings.show_gauge:
            self._chat_screen().add_class("-no-side")
        status = self.widget(StatusLine)
        status.session_name = self.settings.session_name or ""
        self._show_settings(status)
        self.set_interval(self.settings.gauge_busy_interval, self._gauge_tick)
        model = self.settings.model_name or "the model"
        if self.engine is not None:
            self.load_model(self.settings, reuse_engine=True, activity="opening the session…")
        elif self.settings.engine is None:
            self._offer_pull()
        else:
            self.load_model(self.settings, activity=f"loading {model}…")

    def _show_settings(self, status: StatusLine) -> None:
        engine = self.settings.engine
        if engine is not None:
            status.model = self.settings.model_name or engine.model_path.stem
            status.kv = (
                engine.type_k
                if engine.type_k == engine.type_v
                else (f"{engine.type_k}/{engine.type_v}")
            )
            status.n_ctx = engine.n_ctx
        status.window = self.settings.window
        status.repo = Path(self.settings.repo).name if self.settings.repo else ""

    def _offer_pull(self, entry: ModelEntry | None = None) -> None:
        from localctx.models.catalogue import Catalogue

        entry = entry or Catalogue.load().default
        if self.session is None:
            self.widget(StatusLine).activity = f"no model installed: {entry.name}"

        def pulled(ok: bool | None) -> None:
            if ok and self.session is None:
                self.load_model(self.settings, resolve=True, activity=f"loading {entry.name}…")
            elif ok:
                self._reload(model=entry.name)
            elif self.session is None:
                self.report(
                    f"no model loaded; run `localctx models pull {entry.name}` and restart",
                    severity="warning",
                )

        self.push_screen(PullScreen(entry), pulled)

    # ------------------------------------------------------------------ what is going on
    def report(
        self, text: str, *, severity: SeverityLevel = "information", title: str = ""
    ) -> None:
        """A result or an error: a toast, and a one-line notice that stays in the transcript."""
        self.notify(text, title=title, severity=severity, timeout=8)
        if self.chat_visible:
            line = f"{title}: {text}" if title else text
            self.widget(Transcript).add_notice(line, error=severity == "error")

    @contextlib.contextmanager
    def _work(self, activity: str, cancel: threading.Event | None = None) -> Iterator[int]:
        """(Thread) Announce a piece of work: the status shows it until it ends, then says
        `ready · stopped` if it was stopped (Cancelled, or `cancel` set)."""
        work_id = next(self._work_ids)
        self.post_message(WorkStarted(activity, work_id))
        stopped = False
        try:
            yield work_id
        except Cancelled:
            stopped = True
        finally:
            stopped = stopped or (cancel is not None and cancel.is_set())
            self.post_message(WorkFinished("stopped" if stopped else "", work_id))

    @contextlib.contextmanager
    def _model_work(self, activity: str) -> Iterator[tuple[threading.Event, int]]:
        """(Thread) Hold the model for one unit of work: Esc stops it (the session takes back
        what is half done), its progress reaches the status line, `ready` follows its end."""
        cancel = threading.Event()
        # Announced before the lock is taken (the status says what waits) and ended after
        # it is released: `ready` is never shown while the model is held.
        with self._work(activity, cancel) as work_id, self.model_lock:
            self._cancel = cancel
            session = self.session
            scope = (
                session.supervised(cancel, lambda p: self.post_message(WorkProgressed(p, work_id)))
                if session is not None
                else contextlib.nullcontext()
            )
            try:
                with scope:
                    yield cancel, work_id
            finally:
                self._cancel = None

    def on_work_started(self, message: WorkStarted) -> None:
        self._activities[message.work_id] = message.activity
        self._show_state()

    def on_work_progressed(self, message: WorkProgressed) -> None:
        if message.work_id in self._activities:
            self._activities[message.work_id] = describe(message.progress) + " · Esc stops"
            self._show_state()

    def on_work_finished(self, message: WorkFinished) -> None:
        self._activities.pop(message.work_id, None)
        self._show_state(message.note)

    def _show_state(self, note: str = "") -> None:
        if not self.chat_visible:
            return
        status = self.widget(StatusLine)
        status.busy = self.busy
        if self._activities:
            status.activity = next(reversed(self._activities.values()))
        elif self.session is None and self.settings.engine is None:
            status.activity = "no model loaded"
        else:
            status.activity = "ready" + (f" · {note}" if note else "")

    def _set_activity(self, text: str, work_id: int | None = None) -> None:
        """Say what a running piece of work is doing now (the newest one by default)."""
        if work_id is None and self._activities:
            work_id = next(reversed(self._activities))
        if work_id in self._activities:
            self._activities[work_id] = text
        self._show_state()

    # ------------------------------------------------------------------ model loading
    @work(thread=True, exclusive=True, exit_on_error=False, group="model", description="load")
    def load_model(
        self,
        settings: ChatSettings,
        *,
        reuse_engine: bool = False,
        resolve: bool = False,
        carry: list[Any] | None = None,
        activity: str = "loading the model…",
    ) -> None:
        self._open(
            settings, reuse_engine=reuse_engine, resolve=resolve, carry=carry, activity=activity
        )

    def _open(
        self,
        settings: ChatSettings,
        *,
        reuse_engine: bool = False,
        resolve: bool = False,
        carry: list[Any] | None = None,
        activity: str = "loading the model…",
    ) -> None:
        """(Thread) Close the current session (saving its snapshot), load or reuse the engine,
        open the new session, build its gauge sampler, start its context; post ModelLoaded.

        Order matters: the old session saves its KV through the old engine, so it closes
        before that engine does; the sampler reads allocation facts before anything decodes.
        """
        self.loading = True
        start = time.perf_counter()
        if resolve:
            settings = parts.reload_settings(settings)
        notices: list[str] = []
        cancel = threading.Event()
        with self._work(activity) as work_id, self.model_lock:
            self._cancel = cancel
            try:
                old_session, self.session = self.session, None
                if old_session is not None:
                    notices += parts.close_session(old_session)
                engine = self.engine
                if not reuse_engine or engine is None:
                    if settings.engine is None or self._engine_factory is None:
                        raise BadInput("no model to load")
                    new_engine = self._engine_factory(settings.engine)
                    with self._engine_lock:
                        old, self.engine = self.engine, new_engine
                        self.sampler = None
                        if old is not None and old is self._owned_engine:
                            old.close()
                        self._owned_engine = new_engine
                    engine = new_engine
                session = self._make_session(engine, settings, work_id)
                if carry and session.store is None and not session.messages:
                    session.messages.extend(carry)  # a storeless session cannot resume by name
                if settings.session_name is None and session.name:
                    settings = replace(settings, session_name=session.name)
                sampler = self._sampler_factory(engine, session)
                report = lambda p: self.post_message(WorkProgressed(p, work_id))  # noqa: E731
                try:
                    with session.supervised(cancel, report):
                        parts.prepare(session)
                except Cancelled:  # Ctrl+Q while the context was being built
                    notices.append("the context is built at the first message")
                self.settings = settings
                self.sampler = sampler
                self.post_message(
                    ModelLoaded(engine, session, time.perf_counter() - start, notices)
                )
            finally:
                self._cancel = None

    def _make_session(self, engine: Engine, settings: ChatSettings, work_id: int) -> Session:
        if self._session_factory is not parts.default_session:
            return self._session_factory(engine, settings)

        def progress(done: int, total: int | None, current: str = "") -> None:
            self.post_message(WorkProgressed(Progress("indexing", done, 0, "files"), work_id))

        return parts.default_session(engine, settings, progress)

    async def on_model_loaded(self, message: ModelLoaded) -> None:
        if not self.chat_visible:
            return
        self.loading = False
        self.session = message.session
        engine = message.engine
        status = self.widget(StatusLine)
        self._show_settings(status)
        status.model = self.settings.model_name or engine.model_name or "model"
        info = engine.backend_info()
        status.backend = str(info.get("backend", ""))
        status.n_ctx = engine.n_ctx
        policy = message.session.policy
        status.window = (policy.window if policy is not None else None) or self.settings.window
        status.session_name = self.settings.session_name or ""
        self.widget(PromptInput).window = status.window
        self.log.info(f"model ready in {message.seconds:.2f} s")
        transcript = self.widget(Transcript)
        if not transcript.children:
            past = list(message.session.messages)
            if len(past) > RESUMED_MESSAGES_SHOWN:
                hidden = len(past) - RESUMED_MESSAGES_SHOWN
                await transcript.add(Notice(f"{hidden} earlier messages are in memory (F3)"))
            for m in past[-RESUMED_MESSAGES_SHOWN:]:
                if not self.chat_visible:
                    return  # the app is closing mid-redraw
                await self._show_past_message(transcript, m)
            transcript.follow()
        # After the redraw: a notice in an empty transcript would stop the history redraw.
        for notice in [*message.notices, *self._take_notices()]:
            self.report(notice, severity="warning")
        self._refresh_context()
        self._last_sample = 0.0

    async def _show_past_message(self, transcript: Transcript, m: ChatMessage) -> None:
        if m["role"] == "user":
            await transcript.add(UserMessage(m["content"]))
        elif m["role"] == "assistant":
            reply = await transcript.start_reply()
            await reply.write(m["content"])
            await reply.finish()

    def _take_notices(self) -> list[str]:
        """Notices the session collected (snapshot fallbacks …), each shown once."""
        notices = self.session.notices if self.session is not None else []
        if not notices:
            return []
        taken = list(notices)
        notices.clear()
        return taken

    # ------------------------------------------------------------------ a turn
    async def on_prompt_input_submitted(self, event: PromptInput.Submitted) -> None:
        text = event.text
        if not text.strip():
            return  # an empty prompt is ignored, not sent
        prompt = self.widget(PromptInput)
        if is_command(text) and not self.editing:
            prompt.take()
            await self.run_command(text.strip())
            return
        if not self._can_start_turn():
            return
        prompt.take()
        transcript = self.widget(Transcript)
        replace_last = self.editing
        if replace_last:
            self._stop_editing()
            for widget in transcript.last_turn():
                await widget.remove()
        await transcript.add(UserMessage(text))
        await self._begin_reply()
        self.run_turn(text, replace_last=replace_last)

    def _can_start_turn(self) -> bool:
        if self.generating:
            self.report("a reply is still streaming: Esc stops it", severity="warning")
            return False
        if self.session is None or self.loading:
            self.report("the model is still loading; your text is kept", severity="warning")
            return False
        if self._background is not None:  # summaries after the last turn: they can wait
            self._background.set()
        return True

    async def _begin_reply(self) -> None:
        transcript = self.widget(Transcript)
        transcript.follow()
        self._reply = await transcript.start_reply()
        self.generating = True
        self._streamed_tokens = 0
        self._last_sample = 0.0

    @work(thread=True, exit_on_error=False, group="generation", description="reply")
    def run_turn(
        self,
        text: str,
        *,
        replace_last: bool = False,
        sampling: Sampling | None = None,
        note: str = "",
    ) -> None:
        """Stream one reply; post batches of text a few times a second, never per token.

        `replace_last` replaces the newest exchange: with `text`, an edit (taken back, then
        sent anew); without, a regenerate (a new reply from the same context)."""
        with self._model_work("waiting for the model…") as (cancel, work_id):
            self._turn_work = work_id
            session, engine = self.session, self.engine
            if session is None or engine is None:
                raise BadInput("no session: the model is not loaded")
            sampling = sampling or self.settings.sampling
            if replace_last and text:  # an edit: the old exchange goes, the new text is sent
                session.retract_last_turn()
            # The turn's typed events (Session.turn); a regenerate answers again from the
            # same context, without reading the message again.
            events = session.turn(
                None if replace_last and not text else text, sampling, cancel=cancel
            )
            self.post_message(GenerationStarted(text))
            batcher = TokenBatcher(self.settings.token_flush_interval)
            result: TurnResult | None = None
            try:
                for event in events:
                    if isinstance(event, turns.TokensGenerated):
                        flushed = batcher.add(event.text, time.monotonic())
                        if flushed is not None:
                            self.post_message(TokensGenerated(*flushed))
                    elif isinstance(event, turns.SegmentEvicted):
                        self.post_message(SegmentEvicted(event.report))
                    elif isinstance(event, turns.TurnFinished):
                        result = event.result
            except Cancelled:
                self.post_message(PromptWithdrawn(text))
                raise
            finally:
                events.close()
            tail = batcher.flush()
            if tail is not None:
                self.post_message(TokensGenerated(*tail))
            assert result is not None  # the last event of a turn that did not raise
            if cancel.is_set():
                result = replace(result, stop_reason="cancelled")
            figures = TurnFigures(result, max_tokens=sampling.max_tokens, note=note)
            self.post_message(GenerationFinished(figures))
            if not cancel.is_set():
                self._summarize_pending(session, cancel)

    def _summarize_pending(self, session: Session, cancel: threading.Event) -> None:
        """(Thread, model lock held) Summaries of evicted text are written right after a turn,
        so the next turn does not wait for them; a few segments at a time, and sending the
        next message (or Esc) stops them between segments (each summary is one short
        generation, ~1-3 s for the default model on 2 cores)."""
        if session.store is None:
            return
        self._background = cancel
        try:
            if session.summarize_pending(SUMMARIES_PER_TURN):
                self.post_message(ContextChanged())
        except Cancelled:
            self.post_message(ContextChanged())  # the rest stay pending for the next turn
        finally:
            self._background = None

    def on_generation_started(self, message: GenerationStarted) -> None:
        if not self.chat_visible:
            return
        self._set_activity("reading the prompt… · Esc stops", self._turn_work)

    async def on_tokens_generated(self, message: TokensGenerated) -> None:
        if not self.chat_visible:
            return
        self._streamed_tokens += message.n_tokens
        if self._reply is not None:
            await self._reply.write(message.text)
        self._set_activity(
            f"generating · {self._streamed_tokens} tokens · Esc stops", self._turn_work
        )

    async def on_generation_finished(self, message: GenerationFinished) -> None:
        if not self.chat_visible:
            return
        figures = message.figures
        self._turn_figures = figures
        f = figures.result
        stopped = " · stopped" if f.stop_reason == "cancelled" else ""
        cut = (
            f" · stopped at max_tokens {figures.max_tokens:,} (/set max_tokens N for longer)"
            if f.stop_reason == "length"
            else ""
        )
        note = f" · {figures.note}" if figures.note else ""
        footer = (
            f"{f.prompt_tokens:,} tokens in context · {f.completion_tokens:,} reply tokens · "
            f"prefill {f.prefill_tps:.0f} tok/s · decode {f.decode_tps:.1f} tok/s"
            f"{stopped}{cut}{note}"
        )
        await self._end_reply(footer)

    async def on_prompt_withdrawn(self, message: PromptWithdrawn) -> None:
        """The prompt was stopped while the model read it: nothing was sent or stored."""
        if not self.chat_visible:
            return
        reply, self._reply = self._reply, None
        self.generating = False
        if reply is not None:
            await reply.remove()
        users = self.widget(Transcript).query(UserMessage)
        if users:
            users.last().withdraw()
        prompt = self.widget(PromptInput)
        if not prompt.text:
            prompt.load_text(message.text)
            prompt.move_cursor(prompt.document.end)
        self.report("stopped while reading the prompt: nothing was sent; it is back in the prompt")
        self._refresh_context()

    async def _end_reply(self, footer: str, *, failed: bool = False) -> None:
        reply, self._reply = self._reply, None
        self.generating = False
        if reply is not None:
            await reply.finish()
            if not reply.text:
                await reply.write("*(no reply)*" if not failed else "*(failed)*")
                await reply.finish()
            await self.widget(Transcript).add(ReplyFooter(footer, failed=failed))
        self._refresh_context()
        self._last_sample = 0.0  # the cache changed: take a reading now

    def on_segment_evicted(self, message: SegmentEvicted) -> None:
        if not self.chat_visible:
            return
        self._refresh_context()

    def on_context_changed(self, message: ContextChanged) -> None:
        if not self.chat_visible:
            return
        self._refresh_context()

    def _refresh_context(self) -> None:
        self.widget(ContextPanel).view = context_view(self.session)

    def action_cancel(self) -> None:
        if self._cancel is not None and (self.generating or self.busy):
            self._cancel.set()
            self._set_activity("stopping…")
            return
        if len(self.screen_stack) > 1:
            self.pop_screen()
            return
        if self.editing:
            self._stop_editing()
            self.widget(PromptInput).load_text("")
            return
        focused = self.focused
        if isinstance(focused, PromptInput) and focused.selected_text:
            self.copy_to_clipboard(focused.selected_text)  # Ctrl+C on a selection copies it
            return
        self.notify("nothing to stop · Ctrl+Q quits", timeout=2)

    # ------------------------------------------------------------------ copy, regenerate, edit
    def action_copy_reply(self) -> None:
        self.copy_out(CopyTarget(code=False, back=1))

    def action_copy_code(self) -> None:
        self.copy_out(CopyTarget(code=True, back=1))

    def copy_out(self, target: CopyTarget) -> None:
        replies = [r.text for r in self.widget(Transcript).replies() if r.text.strip()]
        if target.code:
            found = [block for text in replies for block in code_blocks(text)]
            what = "code block"
        else:
            found, what = replies, "reply"
        if len(found) < target.back:
            have = f"only {len(found)}" if found else "no"
            self.report(f"nothing to copy: {have} {what}s in this conversation", title="copy")
            return
        text = found[-target.back]
        label = f"the last {what}" if target.back == 1 else f"{what} {target.back} from the end"
        self.copy_to_clipboard(text)
        try:
            path = write_fallback(text)
        except OSError as exc:
            self.report(f"copied {label} to the clipboard; the file copy failed: {exc}")
            return
        self.report(describe_copy(label, text, path), title="copy")

    async def action_regenerate(self) -> None:
        messages = self.session.messages if self.session is not None else []
        if not any(m["role"] == "user" for m in messages):
            self.report("nothing to regenerate yet: send a message first", severity="warning")
            return
        if not self._can_start_turn():
            return
        transcript = self.widget(Transcript)
        for widget in transcript.last_turn()[1:]:  # the reply goes; the question stays
            await widget.remove()
        await self._begin_reply()
        base = self.settings.sampling
        seed = random.randrange(1, 2**31)
        temperature = base.temperature or REGENERATE_TEMPERATURE
        sampling = replace(base, temperature=temperature, seed=seed)
        note = f"regenerated (temperature {temperature:g}, seed {seed})"
        self.run_turn("", replace_last=True, sampling=sampling, note=note)

    def action_edit_last(self) -> None:
        messages = self.session.messages if self.session is not None else []
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)
        if last is None:
            self.report("nothing to edit yet: send a message first", severity="warning")
            return
        if self.generating:
            self.report("a reply is still streaming: Esc stops it", severity="warning")
            return
        prompt = self.widget(PromptInput)
        prompt.load_text(last)
        prompt.move_cursor(prompt.document.end)
        prompt.focus()
        self.editing = True
        prompt.border_title = EDITING

    def _stop_editing(self) -> None:
        self.editing = False
        self.widget(PromptInput).border_title = ""

    # ------------------------------------------------------------------ gauge
    def _gauge_tick(self) -> None:
        if self.sampler is None or self._sampling:
            return
        busy = self.generating or self.busy
        interval = self.settings.gauge_busy_interval if busy else self.settings.gauge_idle_interval
        now = time.monotonic()
        if now - self._last_sample < interval * 0.9:
            return
        self._last_sample, self._sampling = now, True
        self.sample_gauge()

    @work(thread=True, exit_on_error=False, group="gauge", description="gauge")
    def sample_gauge(self) -> None:
        try:
            with self._engine_lock:
                sampler = self.sampler
                reading = sampler.sample() if sampler is not None else None
            if reading is not None:
                self.post_message(GaugeSampled(reading))
        finally:
            self._sampling = False

    def on_gauge_sampled(self, message: GaugeSampled) -> None:
        if not self.chat_visible:
            return
        view = gauge_view(message.reading)
        figures = self._turn_figures
        if figures is not None and not self.generating:
            # The last turn's throughput: the summarizer's decoding is not a turn.
            done = figures.result
            view = replace(view, prefill_tps=done.prefill_tps, decode_tps=done.decode_tps)
        self.widget(GaugePanel).view = view
        self.widget(GaugeLine).view = view
        if view.window:
            self.widget(StatusLine).window = view.window
            self.widget(PromptInput).window = view.window
        self.readings += 1
        if not self.generating:
            self._refresh_context()  # summaries written in the background show up here

    def action_toggle_gauge(self) -> None:
        self._chat_screen().toggle_class("-no-side")

    # ------------------------------------------------------------------ screens
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_memory(self) -> None:
        if isinstance(self.screen, MemoryScreen):
            self.pop_screen()
        elif self.session is None:
            self.report("the memory screen opens once the model is loaded", severity="warning")
        else:
            self.push_screen(MemoryScreen(self.session))

    # ------------------------------------------------------------------ failures
    async def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker failures land: a notice, and the UI back to a usable state."""
        if event.state is not WorkerState.ERROR or not self.chat_visible:
            return
        worker, error = event.worker, event.worker.error
        if isinstance(error, Cancelled):
            return  # a stop the user asked for: the worker already said what happened
        text = (
            str(error) if isinstance(error, LocalctxError) else f"{type(error).__name__}: {error}"
        )
        self.report(text, title=f"{worker.description} failed", severity="error")
        if worker.group == "generation":
            await self._end_reply(f"failed: {text}", failed=True)
        elif worker.group == "model":
            self.loading = False
            self._show_state()
        elif worker.group == "save":
            self.exit(f"localctx: session not saved: {text}")

    # ------------------------------------------------------------------ quitting
    async def action_quit(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
        self._activities[0] = "saving session…"
        self._show_state()
        self.save_and_exit()

    @work(thread=True, exclusive=True, exit_on_error=False, group="save", description="save")
    def save_and_exit(self) -> None:
        """Ctrl+Q: stop whatever holds the model (within one batch), then save the session:
        its messages are already stored; this writes the KV snapshot."""
        if not self.model_lock.acquire(timeout=_TURN_STOP_TIMEOUT):
            self._save_gave_up = True  # a model still loading: leave it, keep what is stored
            self.post_message(SessionSaved(parts.kept_without_snapshot(self.session)))
            return
        try:
            session, self.session = self.session, None
            note = parts.save_session(session) if session is not None else ""
        finally:
            self.model_lock.release()
        self.post_message(SessionSaved(note))

    def on_session_saved(self, message: SessionSaved) -> None:
        self.exit(f"localctx: {message.where}" if message.where else None)

    def on_unmount(self) -> None:
        """Last resort when the app ends another way: stop the turn, save, free the model."""
        if self._cancel is not None:
            self._cancel.set()
        timeout = 0.0 if self._save_gave_up else _TURN_STOP_TIMEOUT
        if not self.model_lock.acquire(timeout=timeout):
            return  # a worker still holds the model: leaking it beats freeing it under them
        try:
            session, self.session = self.session, None
            with contextlib.suppress(LocalctxError, OSError):
                parts.close_session(session)
            with self._engine_lock:
                self.sampler = None
                if self._owned_engine is not None:
                    self._owned_engine.close()
                    self._owned_engine = None
        finally:
            self.model_lock.release()


def make_app(
    settings: ChatSettings,
    *,
    engine: Engine | None = None,
    engine_factory: parts.EngineFactory | None = None,
    session: Session | None = None,
    session_factory: parts.SessionFactory | None = None,
    sampler_factory: parts.SamplerFactory | None = None,
    history: PromptHistory | None = None,
) -> LocalctxApp:
    """The app with its parts: the CLI passes the real loader, tests pass a FakeEngine.

    Give `engine` to use an already-loaded engine (the caller closes it), or `engine_factory`
    to let the app load `settings.engine` in a worker (the app closes what it loaded). The
    prompt history is the one saved under the user's home unless `history` is given.
    """
    if engine is None and engine_factory is None:
        from localctx.engine import load_engine

        engine_factory = load_engine
    return LocalctxApp(
        settings,
        engine=engine,
        engine_factory=engine_factory,
        session=session,
        session_factory=session_factory,
        sampler_factory=sampler_factory,
        history=history or PromptHistory.persisted(),
    )


__all__ = ["BadInput", "LocalctxApp", "make_app"]
