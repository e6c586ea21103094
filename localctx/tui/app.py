"""LocalctxApp: the chat app — owns the loaded engine and session, runs every blocking call in
a thread worker, and turns the workers' messages into widget updates.

Threads and the model: llama.cpp contexts are not thread-safe, so one worker at a time uses
the model — a turn, the summaries written after it, /remember and /forget (they re-decode the
pinned region), loading and session switches all hold `model_lock`. The gauge sampler never
takes it (it reads Python-side state only), so reading the gauge cannot slow a reply. Swapping
or closing the engine also takes `_engine_lock`, which the sampler holds while it reads, so a
reading never touches a freed context. Failures of any worker arrive in one
Worker.StateChanged handler and become a notice; the transcript is never lost.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import replace
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.worker import Worker, WorkerState

from localctx.engine.base import Engine
from localctx.errors import BadInput, LocalctxError
from localctx.tui import parts
from localctx.tui.commands import is_command
from localctx.tui.messages import (
    ContextChanged,
    GaugeSampled,
    GenerationFinished,
    GenerationStarted,
    ModelLoaded,
    SegmentEvicted,
    SessionSaved,
    TokensGenerated,
    TurnFigures,
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

# Closing the engine while a turn still decodes would free memory the turn is using; on exit
# we wait this long for the model lock (a turn checks its cancel flag before every token).
_TURN_STOP_TIMEOUT = 30.0
SUMMARIES_PER_TURN = 2
# A resumed session redraws its newest messages only: each is a Markdown layout (~ms each),
# and a long history would hold the first frame for seconds; the rest is a search away.
RESUMED_MESSAGES_SHOWN = 40


class LocalctxApp(SlashCommands, App[str | None]):
    """Returns (from run()) a line to print after exit, e.g. why the session was not saved."""

    CSS_PATH = "app.tcss"
    TITLE = "localctx"
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (84, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (24, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Stop reply", show=False),
        Binding("ctrl+c", "cancel", "Stop", priority=True, show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "help", "Help"),
        Binding("f2", "toggle_gauge", "Gauge"),
        Binding("f3", "memory", "Memory"),
    ]

    def __init__(
        self,
        settings: ChatSettings,
        *,
        engine: Engine | None = None,
        engine_factory: parts.EngineFactory | None = None,
        session: Any = None,
        session_factory: parts.SessionFactory | None = None,
        sampler_factory: parts.SamplerFactory | None = None,
        history: PromptHistory | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.engine: Engine | None = engine
        self.session: Any = session
        self.sampler: parts.Sampler | None = None
        self._engine_factory = engine_factory
        self._session_factory = session_factory or parts.default_session
        self._sampler_factory = sampler_factory or parts.default_sampler
        self._history = history or PromptHistory()
        self.model_lock = threading.Lock()  # one user of the model at a time (see above)
        self._engine_lock = threading.Lock()
        self._cancel: threading.Event | None = None
        self._owned_engine: Engine | None = None  # loaded here, so closed here
        self._reply: Reply | None = None
        self._last_eviction: Any = None
        self._sampling = False
        self._last_sample = 0.0
        self._streamed_tokens = 0
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

    def widget(self, kind: type[Any]) -> Any:
        return self._chat_screen().query_one(kind)

    @property
    def chat_visible(self) -> bool:
        """False while the app shuts down: late worker messages then have nothing to draw."""
        return self.is_running and any(isinstance(s, ChatScreen) for s in self.screen_stack)

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
        if self.engine is not None:
            self.load_model(self.settings, reuse_engine=True)
        elif self.settings.engine is None:
            self._offer_pull()
        else:
            self.load_model(self.settings)

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

    def _offer_pull(self) -> None:
        from localctx.models.catalogue import Catalogue

        entry = Catalogue.load().default
        self.widget(StatusLine).activity = f"no model installed: {entry.name}"

        def pulled(ok: bool | None) -> None:
            if ok:
                self.load_model(self.settings, resolve=True)
            else:
                self.notify(
                    f"no model loaded; run `localctx models pull {entry.name}` and restart",
                    severity="warning",
                    timeout=10,
                )

        self.push_screen(PullScreen(entry), pulled)

    # ------------------------------------------------------------------ model loading
    @work(thread=True, exclusive=True, exit_on_error=False, group="model", description="load")
    def load_model(
        self,
        settings: ChatSettings,
        *,
        reuse_engine: bool = False,
        resolve: bool = False,
        carry: list[Any] | None = None,
    ) -> None:
        self._open(settings, reuse_engine=reuse_engine, resolve=resolve, carry=carry)

    def _open(
        self,
        settings: ChatSettings,
        *,
        reuse_engine: bool = False,
        resolve: bool = False,
        carry: list[Any] | None = None,
    ) -> None:
        """(Thread) Close the current session (saving its snapshot), load or reuse the engine,
        open the new session, build its gauge sampler, start its context; post ModelLoaded.

        Order matters: the old session saves its KV through the old engine, so it closes
        before that engine does; the sampler reads allocation facts before anything decodes.
        """
        self.loading = True
        self.call_from_thread(self._set_activity, "loading model…")
        start = time.perf_counter()
        if resolve:
            settings = parts.reload_settings(settings)
        notices: list[str] = []
        with self.model_lock:
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
            session = self._session_factory(engine, settings)
            if carry and getattr(session, "store", None) is None and not session.messages:
                session.messages.extend(carry)  # a storeless session cannot resume by name
            if settings.session_name is None and getattr(session, "name", None):
                settings = replace(settings, session_name=session.name)
            sampler = self._sampler_factory(engine, session)
            parts.prepare(session)
        self.settings = settings
        self.sampler = sampler
        self.post_message(ModelLoaded(engine, session, time.perf_counter() - start, notices))

    async def on_model_loaded(self, message: ModelLoaded) -> None:
        if not self.chat_visible:
            return
        self.loading = False
        self.session = message.session
        engine = message.engine
        for notice in [*message.notices, *self._take_notices()]:
            self.notify(notice, severity="warning", timeout=8)
        status = self.widget(StatusLine)
        self._show_settings(status)
        status.model = self.settings.model_name or getattr(engine, "model_name", "") or "model"
        info = engine.backend_info()
        status.backend = str(info.get("backend", ""))
        status.n_ctx = engine.n_ctx
        window = getattr(getattr(message.session, "policy", None), "window", None)
        status.window = window or self.settings.window
        status.session_name = self.settings.session_name or ""
        self.log.info(f"model ready in {message.seconds:.2f} s")
        self._set_activity("ready")
        transcript = self.widget(Transcript)
        if not transcript.children:
            past = list(getattr(message.session, "messages", []))
            if len(past) > RESUMED_MESSAGES_SHOWN:
                hidden = len(past) - RESUMED_MESSAGES_SHOWN
                await transcript.add(Notice(f"{hidden} earlier messages are in memory (F3)"))
            for m in past[-RESUMED_MESSAGES_SHOWN:]:
                if not self.chat_visible:
                    return  # the app is closing mid-redraw
                await self._show_past_message(transcript, m)
        self._refresh_context()
        self._last_sample = 0.0

    async def _show_past_message(self, transcript: Transcript, m: Any) -> None:
        if m.get("role") == "user":
            await transcript.add(UserMessage(m.get("content", "")))
        elif m.get("role") == "assistant":
            reply = await transcript.start_reply()
            await reply.write(m.get("content", ""))
            await reply.finish()

    def _take_notices(self) -> list[str]:
        """Notices the session collected (snapshot fallbacks …), each shown once."""
        notices = getattr(self.session, "notices", None)
        if not notices:
            return []
        taken = list(notices)
        notices.clear()
        return taken

    def _set_activity(self, text: str) -> None:
        self.widget(StatusLine).activity = text

    # ------------------------------------------------------------------ a turn
    async def on_prompt_input_submitted(self, event: PromptInput.Submitted) -> None:
        text = event.text
        if not text.strip():
            return  # an empty prompt is ignored, not sent
        prompt = self.widget(PromptInput)
        if is_command(text):
            prompt.take()
            await self.run_command(text.strip())
            return
        if self.generating:
            self.notify("a reply is still streaming: Esc stops it", severity="warning")
            return
        if self.session is None or self.loading:
            self.notify("the model is still loading; your text is kept", severity="warning")
            return
        prompt.take()
        transcript = self.widget(Transcript)
        await transcript.add(UserMessage(text))
        self._reply = await transcript.start_reply()
        self.generating = True
        self._streamed_tokens = 0
        self._set_activity("reading the prompt…")
        self._last_sample = 0.0
        self.run_turn(text)

    @work(thread=True, exclusive=True, exit_on_error=False, group="generation", description="reply")
    def run_turn(self, text: str) -> None:
        """Stream one reply; post batches of text a few times a second, never per token."""
        cancel = self._cancel = threading.Event()
        with self.model_lock:
            session, engine = self.session, self.engine
            if session is None or engine is None:
                raise BadInput("no session: the model is not loaded")
            self.post_message(GenerationStarted(text))
            batcher = TokenBatcher(self.settings.token_flush_interval)
            for event in session.stream(text, self.settings.sampling, cancel=cancel):
                flushed = batcher.add(event.text, time.monotonic())
                if flushed is not None:
                    self.post_message(TokensGenerated(*flushed))
                    self._check_eviction(session)
            tail = batcher.flush()
            if tail is not None:
                self.post_message(TokensGenerated(*tail))
            self._check_eviction(session)
            stats = engine.stats
            figures = TurnFigures(
                prompt_tokens=getattr(session, "_last_prompt_tokens", stats.prefill_tokens),
                completion_tokens=stats.decode_tokens,
                prefill_tps=stats.prefill_tps,
                decode_tps=stats.decode_tps,
                stop_reason="cancelled" if cancel.is_set() else stats.stop_reason,
            )
            self.post_message(GenerationFinished(figures))
            if not cancel.is_set():
                self._summarize_pending(session)

    def _check_eviction(self, session: Any) -> None:
        eviction = getattr(session, "last_eviction", None)
        if eviction is not None and eviction is not self._last_eviction:
            self._last_eviction = eviction
            self.post_message(SegmentEvicted(eviction))

    def _summarize_pending(self, session: Any) -> None:
        """(Thread, model lock held) Summaries of evicted text are written right after a turn,
        so the next turn does not wait for them; a few segments at a time keeps Ctrl+Q quick
        (each summary is one short generation, ~1-3 s for the default model on 2 cores)."""
        summarize = getattr(session, "summarize_pending", None)
        if summarize is None or getattr(session, "store", None) is None:
            return
        if summarize(SUMMARIES_PER_TURN):
            self.post_message(ContextChanged())

    def on_generation_started(self, message: GenerationStarted) -> None:
        if not self.chat_visible:
            return
        self._set_activity("reading the prompt…")

    async def on_tokens_generated(self, message: TokensGenerated) -> None:
        if not self.chat_visible:
            return
        self._streamed_tokens += message.n_tokens
        if self._reply is not None:
            await self._reply.write(message.text)
        self._set_activity(f"generating · {self._streamed_tokens} tokens · Esc stops")

    async def on_generation_finished(self, message: GenerationFinished) -> None:
        if not self.chat_visible:
            return
        f = message.figures
        stopped = " · stopped" if f.stop_reason == "cancelled" else ""
        cut = " · hit max tokens" if f.stop_reason == "length" else ""
        footer = (
            f"{f.prompt_tokens:,} tokens in context · {f.completion_tokens:,} reply tokens · "
            f"prefill {f.prefill_tps:.0f} tok/s · decode {f.decode_tps:.1f} tok/s{stopped}{cut}"
        )
        await self._end_reply(footer)
        self._set_activity("ready" + stopped)

    async def _end_reply(self, footer: str, *, failed: bool = False) -> None:
        reply, self._reply = self._reply, None
        self.generating = False
        self._cancel = None
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
        if self.generating and self._cancel is not None:
            self._cancel.set()
            self._set_activity("stopping…")
            return
        if len(self.screen_stack) > 1:
            self.pop_screen()
            return
        focused = self.focused
        if isinstance(focused, PromptInput) and focused.selected_text:
            self.copy_to_clipboard(focused.selected_text)  # Ctrl+C on a selection copies it
            return
        self.notify("nothing to stop · Ctrl+Q quits", timeout=2)

    # ------------------------------------------------------------------ gauge
    def _gauge_tick(self) -> None:
        if self.sampler is None or self._sampling:
            return
        busy = self.generating or self.loading
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
        self.widget(GaugePanel).view = view
        self.widget(GaugeLine).view = view
        if view.window:
            self.widget(StatusLine).window = view.window
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
            self.notify("the memory screen opens once the model is loaded", severity="warning")
        else:
            self.push_screen(MemoryScreen(self.session))

    # ------------------------------------------------------------------ failures
    async def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker failures land: a notice, and the UI back to a usable state."""
        if event.state is not WorkerState.ERROR or not self.chat_visible:
            return
        worker, error = event.worker, event.worker.error
        text = (
            str(error) if isinstance(error, LocalctxError) else f"{type(error).__name__}: {error}"
        )
        self.notify(text, title=f"{worker.description} failed", severity="error", timeout=8)
        if worker.group == "generation":
            await self._end_reply(f"failed: {text}", failed=True)
            self._set_activity("ready · last reply failed")
        elif worker.group == "model":
            self.loading = False
            self._set_activity("model not loaded" if self.session is None else "ready")
        elif worker.group == "ingest":
            self._set_activity("ready · ingest failed")
        elif worker.group == "save":
            self.exit(f"localctx: session not saved: {text}")

    # ------------------------------------------------------------------ quitting
    async def action_quit(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
        self._set_activity("saving session…")
        self.save_and_exit()

    @work(thread=True, exclusive=True, exit_on_error=False, group="save", description="save")
    def save_and_exit(self) -> None:
        """Ctrl+Q: wait for the turn to stop (it checks cancel before each token), then save
        the session: its messages are already stored; this writes the KV snapshot."""
        if not self.model_lock.acquire(timeout=_TURN_STOP_TIMEOUT):
            raise BadInput("the model is still busy; try Ctrl+Q again")
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
        if not self.model_lock.acquire(timeout=_TURN_STOP_TIMEOUT):
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
    session: Any = None,
    session_factory: parts.SessionFactory | None = None,
    sampler_factory: parts.SamplerFactory | None = None,
    history: PromptHistory | None = None,
) -> LocalctxApp:
    """The app with its parts: the CLI passes the real loader, tests pass a FakeEngine.

    Give `engine` to use an already-loaded engine (the caller closes it), or `engine_factory`
    to let the app load `settings.engine` in a worker (the app closes what it loaded).
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
        history=history,
    )


__all__ = ["BadInput", "LocalctxApp", "make_app"]
