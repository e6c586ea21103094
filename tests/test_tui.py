"""Pilot tests of the chat app on a FakeEngine: deterministic streams, commands, failures.

Waits are on the app's own signals (workers finished, messages posted), never on sleeps sized
to this machine. The real-model test is in test_tui_real.py.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import Input

from localctx.engine.base import EngineSettings, Sampling
from localctx.engine.fake import FakeEngine
from localctx.errors import EngineFailed
from localctx.tui import ChatSettings, LocalctxApp, make_app
from localctx.tui.messages import (
    GaugeSampled,
    GenerationFinished,
    GenerationStarted,
    TokensGenerated,
)
from localctx.tui.screens.memory import MemoryScreen
from localctx.tui.widgets.chat.prompt import PromptInput
from localctx.tui.widgets.chat.status import StatusLine
from localctx.tui.widgets.chat.transcript import CommandAnswer, Reply, ReplyFooter, UserMessage
from localctx.tui.widgets.context.panel import ContextPanel
from localctx.tui.widgets.gauge.panel import GaugeLine, GaugePanel

DATA = Path(__file__).parent / "data"


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (no async pytest plugin is installed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class Recorder:
    """A message_hook that keeps every message the app processes, for assertions."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def of(self, kind: type[Message]) -> list[Any]:
        return [m for m in self.messages if isinstance(m, kind)]


def fake_app(engine: FakeEngine | None = None, **settings: Any) -> LocalctxApp:
    engine = engine or FakeEngine()
    chat_settings = ChatSettings(engine=engine.settings, model_name="fake", **settings)
    return make_app(chat_settings, engine=engine)


async def until(pilot: Pilot[Any], condition: Callable[[], bool], steps: int = 400) -> None:
    """Let the app run until `condition` holds (bounded, so a bug fails instead of hanging)."""
    for _ in range(steps):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition never held")


async def ready(pilot: Pilot[Any]) -> LocalctxApp:
    app = pilot.app
    assert isinstance(app, LocalctxApp)
    await until(pilot, lambda: app.session is not None, steps=6000)  # a loaded box: 2 min
    return app


async def ask(pilot: Pilot[Any], text: str) -> None:
    app = await ready(pilot)
    prompt = app.widget(PromptInput)
    prompt.load_text(text)
    prompt.focus()
    await pilot.press("enter")
    await until(pilot, lambda: not app.generating, steps=6000)
    await app.workers.wait_for_complete()
    await pilot.pause()


@sync
async def test_a_question_streams_a_markdown_answer_in_batches() -> None:
    engine = FakeEngine(token_delay=0.002)
    answer = "Here is code:\n\n```python\nprint('hi')\n```\n\nand **more** text " * 3
    engine.enqueue(answer)
    recorder = Recorder()
    app = fake_app(engine)
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await ask(pilot, "show me code")
        reply = app.screen.query_one(Reply)
        assert reply.text == answer
        assert app.screen.query_one(UserMessage).render_str is not None
        assert len(recorder.of(GenerationStarted)) == 1
        batches = recorder.of(TokensGenerated)
        assert sum(b.n_tokens for b in batches) == len(answer.encode())
        assert len(batches) < len(answer) / 4  # batched, not one message per token
        (finished,) = recorder.of(GenerationFinished)
        assert finished.figures.result.stop_reason == "eog"
        assert app.screen.query_one(ReplyFooter)
        assert app.session.messages[-1]["content"] == answer.strip()
        assert app.screen.query("MarkdownFence")  # the code block is a highlighted fence


@sync
async def test_empty_prompt_is_ignored_and_history_recalls_prompts() -> None:
    recorder = Recorder()
    app = fake_app()
    async with app.run_test(size=(100, 30), message_hook=recorder) as pilot:
        await ready(pilot)
        await pilot.press("enter", "space", "enter")
        await pilot.pause()
        assert not recorder.of(GenerationStarted)
        assert not app.screen.query(UserMessage)
        await ask(pilot, "first question")
        prompt = app.widget(PromptInput)
        prompt.load_text("")
        await pilot.press("up")
        assert prompt.text == "first question"
        await pilot.press("down")
        assert prompt.text == ""


@sync
async def test_multi_line_entry_keeps_new_lines() -> None:
    app = fake_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("a", "ctrl+j", "b")
        assert app.widget(PromptInput).text == "a\nb"
        await pilot.press("enter")
        await until(pilot, lambda: not app.generating and bool(app.session.messages))
        await app.workers.wait_for_complete()
        assert app.session.messages[0]["content"] == "a\nb"


@sync
async def test_escape_cancels_within_a_token() -> None:
    engine = FakeEngine(token_delay=0.01)
    engine.enqueue("x" * 2000)  # 20 s if not stopped
    recorder = Recorder()
    app = fake_app(engine)
    async with app.run_test(size=(100, 30), message_hook=recorder) as pilot:
        app_ = await ready(pilot)
        app_.widget(PromptInput).load_text("long one")
        await pilot.press("enter")
        await until(pilot, lambda: bool(recorder.of(TokensGenerated)))
        await pilot.press("escape")
        await until(pilot, lambda: bool(recorder.of(GenerationFinished)))
        (finished,) = recorder.of(GenerationFinished)
        assert finished.figures.result.stop_reason == "cancelled"
        assert finished.figures.result.completion_tokens < 2000
        assert "stopped" in str(app.screen.query_one(ReplyFooter).render())
        assert not app.generating


@sync
async def test_gauge_updates_while_generating() -> None:
    engine = FakeEngine(token_delay=0.005)
    engine.enqueue("y" * 300)
    recorder = Recorder()
    app = fake_app(engine, gauge_busy_interval=0.1)
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await ask(pilot, "go")
        await until(pilot, lambda: app.widget(GaugePanel).view.cells_held > 300)
        readings = recorder.of(GaugeSampled)
        assert len(readings) >= 2
        held = [r.reading.kv.cells_used for r in readings]
        assert held == sorted(held) and held[-1] > held[0]
        assert app.widget(GaugePanel).view.decode_tps


@sync
async def test_a_failing_turn_becomes_a_notice_and_keeps_the_transcript() -> None:
    class Broken(FakeEngine):
        def generate(self, sampling: Sampling, **kwargs: Any) -> Any:
            raise EngineFailed("llama_decode returned 1")

    app = fake_app(Broken())
    async with app.run_test(size=(100, 30)) as pilot:
        await ask(pilot, "will fail")
        assert any("llama_decode returned 1" in n.message for n in app._notifications)
        assert app.screen.query_one(UserMessage)
        assert "failed" in str(app.screen.query_one(ReplyFooter).render())
        assert app.is_running and not app.generating


@sync
async def test_unknown_command_and_missing_ingest_path_are_notices(tmp_path: Path) -> None:
    app = fake_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await ask(pilot, "/frobnicate")
        await ask(pilot, f"/ingest {tmp_path / 'nope'}")
        messages = [n.message for n in app._notifications]
        assert any("unknown command /frobnicate" in m and "/help" in m for m in messages)
        assert any("no such directory" in m for m in messages)
        assert not app.screen.query(UserMessage)  # commands never reach the model


@sync
async def test_help_window_kv_and_clear_do_what_they_say() -> None:
    loaded: list[EngineSettings] = []

    def factory(settings: EngineSettings) -> FakeEngine:
        loaded.append(settings)
        return FakeEngine(settings)

    engine = FakeEngine()
    settings = ChatSettings(engine=engine.settings, model_name=None)
    app = make_app(settings, engine=engine, engine_factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "/help")
        assert "/window N" in app.screen.query_one(CommandAnswer).source
        await ask(pilot, "hello")
        await ask(pilot, "/window 256")
        await until(pilot, lambda: app.settings.window == 256 and not app.loading)
        assert app.widget(StatusLine).window == 256
        assert app.session.messages  # the conversation carried over
        await ask(pilot, "/kv bogus")
        assert any("unknown KV cache type" in n.message for n in app._notifications)


@sync
async def test_clear_empties_the_transcript() -> None:
    app = fake_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ask(pilot, "hello")
        assert app.screen.query(UserMessage)
        await ask(pilot, "/clear")
        await until(pilot, lambda: not app.loading and not app.session.messages)
        assert not app.screen.query(UserMessage)


@sync
async def test_remember_recall_forget_go_through_the_memory_store() -> None:
    app = fake_app()  # the default session: Session.open over stores in the test's home
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "/remember the blue depot access code is 4471")
        answers = app.screen.query(CommandAnswer)
        assert "pinned to core memory as `c1`" in answers.last().source
        assert [text for _, text in app.session.core] == ["the blue depot access code is 4471"]
        assert "4471" in " ".join(app.widget(ContextPanel).view.pinned)
        await ask(pilot, "/recall depot")
        assert "core c1" in app.screen.query(CommandAnswer).last().source
        await ask(pilot, "/forget c1")
        assert "forgot 1 item: `c1`" in app.screen.query(CommandAnswer).last().source
        assert app.session.core == []
        await ask(pilot, "/recall depot")
        assert "nothing in memory matches" in app.screen.query(CommandAnswer).last().source


@sync
async def test_memory_commands_on_a_storeless_session_are_notices() -> None:
    from localctx.session import Session

    engine = FakeEngine()
    app = make_app(
        ChatSettings(engine=engine.settings), engine=engine, session_factory=lambda e, s: Session(e)
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await ask(pilot, "/remember x")
        assert any("needs a memory store" in n.message for n in app._notifications)
        assert app.is_running


@sync
async def test_memory_screen_lists_and_searches_the_store() -> None:
    app = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "/remember the staging server is called heron")
        await ask(pilot, "what is staging called")
        await pilot.press("f3")
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, MemoryScreen)
        kinds = {getattr(item, "kind", "") for item in screen._items}
        assert {"core", "message"} <= kinds
        await pilot.press("h", "e", "r", "o", "n")  # typing reaches the search box
        search = screen.query_one(Input)
        assert search.value == "heron" and screen.focused is search
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen._items and all("heron" in item.text for item in screen._items)


@sync
async def test_a_200kb_paste_goes_through_the_window_and_the_ui_stays_live() -> None:
    text = (DATA / "devils-dictionary-excerpt.txt").read_text(encoding="utf-8")
    assert len(text) > 150_000  # ~200K tokens for the byte-per-token fake, 50x its window

    class SlowPrefill(FakeEngine):
        """Prefill takes a while (20 ms a batch), so the UI is checked while it runs."""

        def decode(self, tokens: Any, *, make_room: Any = None) -> None:
            time.sleep(0.02)
            super().decode(tokens, make_room=make_room)

    engine = SlowPrefill(EngineSettings(model_path=Path("fake.gguf"), n_ctx=4096))
    engine.enqueue("summarised")
    recorder = Recorder()
    app = fake_app(engine, window=2048, gauge_busy_interval=0.1)
    async with app.run_test(size=(100, 30), message_hook=recorder) as pilot:
        await ready(pilot)
        prompt = app.widget(PromptInput)
        prompt.focus()
        app.post_message(events.Paste(text))  # as a terminal delivers it: to the focused widget
        await until(pilot, lambda: len(prompt.text) == len(text))
        await pilot.press("enter")
        await until(pilot, lambda: bool(recorder.of(GenerationStarted)))
        await pilot.press("f2")  # the UI answers while the worker prefills
        assert not app.screen.query_one("#side").display
        assert not recorder.of(GenerationFinished)  # ... and the prefill was still running
        await until(pilot, lambda: not app.generating, steps=3000)
        await app.workers.wait_for_complete()
        shown = str(app.screen.query_one(UserMessage).render())
        assert len(shown) < 3_000 and "sent whole to the model" in shown
        assert app.session.messages[0]["content"] == text
        assert app.screen.query_one(Reply).text == "summarised"
        readings = [m.reading.kv for m in recorder.of(GaugeSampled)]
        assert max(r.cells_used for r in readings) <= 4096  # the cache stayed bounded
        assert readings[-1].evictions > 0 and readings[-1].tokens_seen > 150_000
        assert app.widget(ContextPanel).view.eviction.startswith("segment s")


@sync
async def test_a_small_terminal_collapses_the_gauge_to_one_line() -> None:
    app = fake_app()
    async with app.run_test(size=(60, 20)) as pilot:
        await ask(pilot, "hi")
        assert app.screen.has_class("-narrow")
        assert not app.screen.query_one("#side").display
        line = app.widget(GaugeLine)
        assert line.display and line.region.width > 0
        prompt = app.widget(PromptInput)
        assert prompt.region.height >= 1 and prompt.region.bottom <= 20
        assert app.screen.query_one(Reply).text == "echo: hi"


@sync
async def test_f2_toggles_the_side_panel() -> None:
    app = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await ready(pilot)
        assert app.screen.query_one("#side").display
        await pilot.press("f2")
        assert not app.screen.query_one("#side").display
        assert app.widget(GaugeLine).display


@sync
async def test_f1_help_and_f3_memory_screens_open_and_close() -> None:
    app = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await ready(pilot)
        await pilot.press("f1")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.press("f3")
        assert type(app.screen).__name__ == "MemoryScreen"
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("escape")
        assert type(app.screen).__name__ == "ChatScreen"


@sync
async def test_ctrl_q_saves_the_session_and_it_resumes_by_name() -> None:
    engine = FakeEngine()
    engine.enqueue("the answer is 42")
    app = fake_app(engine, session_name="demo")
    async with app.run_test(size=(100, 30)) as pilot:
        await ask(pilot, "what is the answer")
        await pilot.press("ctrl+q")
        await until(pilot, lambda: not app.is_running)
    assert app.return_value is not None and "session `demo` saved (2 messages)" in app.return_value
    assert not engine.closed  # an engine passed in belongs to the caller

    again = fake_app(FakeEngine(), session_name="demo")
    async with again.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        # The resumed reply is mounted first and filled after: wait for its text, not its box
        # (under load the two can be a frame apart).
        await until(
            pilot,
            lambda: any(r.text == "the answer is 42" for r in again.screen.query(Reply)),
        )
        assert [m["content"] for m in again.session.messages] == [
            "what is the answer",
            "the answer is 42",
        ]
        assert again.screen.query_one(Reply).text == "the answer is 42"
        assert again.widget(StatusLine).session_name == "demo"


@pytest.mark.parametrize("size", [(60, 20), (200, 60)])
@sync
async def test_layout_survives_sizes(size: tuple[int, int]) -> None:
    app = fake_app()
    async with app.run_test(size=size) as pilot:
        await ask(pilot, "hi")
        assert app.widget(PromptInput).region.height >= 1


@sync
async def test_plan_ingest_and_repo_commands(smollm_path: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "depot.py").write_text('def parse_depot(code):\n    """Depot for a code."""\n')
    engine = FakeEngine(EngineSettings(model_path=smollm_path, n_ctx=4096))
    app = fake_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "/plan")
        table = app.screen.query(CommandAnswer).last().source
        assert "| q8_0 |" in table and "| q4_0 |" in table
        await ask(pilot, f"/ingest {repo}")
        assert "indexed 1 files" in app.screen.query(CommandAnswer).last().source
        await ask(pilot, f"/repo {repo}")
        await until(pilot, lambda: not app.loading and app.settings.repo == repo.resolve())
        assert app.session.repo is not None and "depot.py" in app.session.repo.digest
        await ask(pilot, "/recall parse_depot")
        assert "depot.py:1-2" in app.screen.query(CommandAnswer).last().source


@sync
async def test_model_command_reloads_and_keeps_the_conversation() -> None:
    loaded: list[EngineSettings] = []

    def factory(settings: EngineSettings) -> FakeEngine:
        loaded.append(settings)
        return FakeEngine(settings)

    first = FakeEngine()
    app = make_app(
        ChatSettings(engine=first.settings, session_name="keep"),
        engine=first,
        engine_factory=factory,
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "hello")
        await ask(pilot, "/model gemma3-270m")
        await until(pilot, lambda: bool(loaded) and not app.loading and app.session is not None)
        assert loaded[0].model_path.name.startswith("gemma-3-270m")
        assert app.widget(StatusLine).model == "gemma3-270m"
        assert [m["content"] for m in app.session.messages] == ["hello", "echo: hello"]
        await ask(pilot, "/model no-such-model")
        assert any("unknown model 'no-such-model'" in n.message for n in app._notifications)


@sync
async def test_session_command_switches_and_comes_back() -> None:
    app = fake_app(session_name="one")
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "first session question")
        await ask(pilot, "/session two")
        await until(pilot, lambda: not app.loading and app.settings.session_name == "two")
        assert app.session.messages == [] and not app.screen.query(UserMessage)
        await ask(pilot, "/session one")
        await until(pilot, lambda: not app.loading and app.settings.session_name == "one")
        await until(pilot, lambda: bool(app.screen.query(UserMessage)))
        assert app.session.messages[0]["content"] == "first session question"


@sync
async def test_first_start_without_a_model_offers_the_pull(
    smollm_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import localctx.models.pull as pull_module

    def fake_pull(entry: Any, progress: Any) -> tuple[Path, bool]:
        progress(50, 100)
        progress(100, 100)
        return smollm_path, True

    monkeypatch.setattr(pull_module, "pull", fake_pull)
    app = make_app(ChatSettings(engine=None), engine_factory=lambda s: FakeEngine(s))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: bool(app.screen.query("#pull-yes")))
        await pilot.press("enter")  # the Pull button has the focus
        await until(pilot, lambda: app.session is not None)
        assert app.settings.engine is not None
        assert app.settings.engine.model_path == smollm_path
    declined = make_app(ChatSettings(engine=None), engine_factory=lambda s: FakeEngine(s))
    async with declined.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: type(declined.screen).__name__ == "PullScreen")
        await pilot.press("escape")
        await until(pilot, lambda: any("models pull" in n.message for n in declined._notifications))
        assert declined.session is None and declined.is_running


@sync
async def test_a_long_resumed_history_shows_its_newest_messages() -> None:
    from localctx.session import Session
    from localctx.tui.app import RESUMED_MESSAGES_SHOWN
    from localctx.tui.widgets.chat.transcript import Notice

    engine = FakeEngine()
    messages: list[Any] = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"}
        for i in range(100)
    ]
    app = make_app(
        ChatSettings(engine=engine.settings),
        engine=engine,
        session_factory=lambda e, s: Session(e, messages=messages),
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await until(pilot, lambda: bool(app.screen.query(Notice)))

        def shown() -> int:
            return len(app.screen.query(UserMessage)) + len(app.screen.query(Reply))

        await until(pilot, lambda: shown() >= RESUMED_MESSAGES_SHOWN)
        await pilot.pause()
        assert shown() == RESUMED_MESSAGES_SHOWN
        assert app.screen.query(Reply).last().text == "message 99"
        assert "60 earlier messages" in str(app.screen.query_one(Notice).render())
