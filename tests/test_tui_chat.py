"""Pilot tests of the chat as people who use other chat apps expect it, on the FakeEngine:
progress for long work, never `ready` while busy, a transcript that follows, typing that always
reaches the prompt, copy, regenerate, edit, sessions, pickers, settings, persistent notices,
the memory screen's guards and the narrow layout. The real-model counterparts are in
test_tui_real.py and scripts/tui_check.sh.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.widgets import DataTable, Input

from localctx import paths
from localctx.engine.base import EngineSettings
from localctx.engine.fake import FakeEngine
from localctx.memory.recall import RecallStore
from localctx.tui import ChatSettings, make_app
from localctx.tui import state as tui_state
from localctx.tui.app import LocalctxApp
from localctx.tui.commands import KEYS, help_markdown
from localctx.tui.messages import (
    GenerationFinished,
    PromptWithdrawn,
    WorkFinished,
    WorkProgressed,
)
from localctx.tui.screens.chat import ChatScreen
from localctx.tui.screens.dialogs import ConfirmScreen, PinScreen
from localctx.tui.screens.memory import MemoryScreen
from localctx.tui.screens.models import ModelsScreen
from localctx.tui.screens.sessions import SessionsScreen
from localctx.tui.widgets.chat.prompt import PromptInput
from localctx.tui.widgets.chat.status import StatusLine
from localctx.tui.widgets.chat.transcript import (
    CommandAnswer,
    Notice,
    Reply,
    ReplyFooter,
    Transcript,
    UserMessage,
)
from localctx.tui.widgets.gauge.panel import GaugePanel
from tests.test_tui import Recorder, ask, fake_app, ready, sync, until

DATA = Path(__file__).parent / "data"
PROSE = (DATA / "devils-dictionary-excerpt.txt").read_text(encoding="utf-8")


def slow_engine(n_ctx: int = 4096, chunk_delay: float = 0.03, **kw: Any) -> FakeEngine:
    settings = EngineSettings(model_path=Path("fake.gguf"), n_ctx=n_ctx, n_batch=256)
    return FakeEngine(settings, chunk_delay=chunk_delay, **kw)


def notices(app: LocalctxApp) -> list[str]:
    return [str(n.render()) for n in app.widget(Transcript).query(Notice)]


async def send(pilot: Any, text: str) -> None:
    """Type-and-Enter without waiting for the reply (for tests that act during it)."""
    app = await ready(pilot)
    prompt = app.widget(PromptInput)
    prompt.load_text(text)
    prompt.focus()
    await pilot.press("enter")


# ------------------------------------------------------------------ 1. long work is not silent
@sync
async def test_a_long_prefill_shows_tokens_and_an_eta_then_ready() -> None:
    engine = slow_engine()
    engine.enqueue("done")
    recorder = Recorder()
    app = fake_app(engine, window=2048)
    seen: list[str] = []
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await send(pilot, PROSE[:6000])
        for _ in range(3000):
            seen.append(app.widget(StatusLine).activity)
            if recorder.of(GenerationFinished) and not app.busy:
                break
            await pilot.pause(0.01)
        await app.workers.wait_for_complete()
        await pilot.pause()
        reports = [m.progress for m in recorder.of(WorkProgressed)]
        prompt = [p for p in reports if p.stage == "reading the prompt"]
        assert prompt and prompt[-1].done == prompt[-1].total > 6000
        assert any("reading the prompt" in a and "tokens" in a and "ETA" in a for a in seen)
        assert app.widget(StatusLine).activity == "ready"


@sync
async def test_status_never_says_ready_while_the_model_is_held() -> None:
    """Summaries run after the reply; the status says so until they are written."""
    engine = slow_engine(n_ctx=1024, chunk_delay=0.0, token_delay=0.005)
    recorder = Recorder()
    app = fake_app(engine, window=600)
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await ready(pilot)
        wrong: list[str] = []
        shown: list[str] = []
        for i in range(4):
            await send(pilot, f"turn {i} " + PROSE[i * 500 : i * 500 + 450])
            for _ in range(3000):
                activity = app.widget(StatusLine).activity
                shown.append(activity)
                if activity.startswith("ready") and app.model_lock.locked():
                    wrong.append(activity)
                if not app.busy and not app.generating and len(recorder.of(WorkFinished)):
                    break
                await pilot.pause(0.005)
            await app.workers.wait_for_complete()
        assert not wrong
        assert any(a.startswith("summarizing") and "segments" in a for a in shown), set(shown)


@sync
async def test_a_long_paste_shows_its_size_before_it_is_sent() -> None:
    app = fake_app(window=512)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        prompt = app.widget(PromptInput)
        prompt.focus()
        app.post_message(events.Paste(PROSE[:20_000]))
        await until(pilot, lambda: len(prompt.text) == 20_000)
        await pilot.pause()
        note = str(prompt.border_subtitle)
        assert "KiB" in note and "tokens" in note and "512 window" in note
        prompt.load_text("short")
        await pilot.pause()
        assert not prompt.border_subtitle


# ------------------------------------------------------------------ Part A in the app
@sync
async def test_esc_during_a_prefill_takes_the_message_back_and_returns_it() -> None:
    engine = slow_engine(chunk_delay=0.05)
    recorder = Recorder()
    app = fake_app(engine, window=2048)
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await ask(pilot, "first")
        store_rows = app.session.store.messages(app.session.session_id)
        cells = engine.tokens
        paste = PROSE[:8000]
        await send(pilot, paste)
        await until(pilot, lambda: bool(recorder.of(WorkProgressed)) and app.generating)
        await pilot.press("escape")
        await until(pilot, lambda: bool(recorder.of(PromptWithdrawn)) and not app.busy)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert engine.tokens == cells
        assert app.session.store.messages(app.session.session_id) == store_rows
        assert app.widget(PromptInput).text == paste  # back in the prompt, to edit or resend
        withdrawn = app.widget(Transcript).query(UserMessage).last()
        assert withdrawn.has_class("withdrawn") and "not sent" in str(withdrawn.render())
        replies = [r.text for r in app.widget(Transcript).query(Reply)]
        assert replies == ["echo: first"]  # the empty reply it had started is gone
        assert any("nothing was sent" in n for n in notices(app))
        assert app.widget(StatusLine).activity == "ready · stopped"
        app.widget(PromptInput).load_text("")
        await ask(pilot, "second")
        assert app.session.messages[-1]["content"] == "echo: second"


@sync
async def test_ctrl_q_during_a_prefill_saves_what_is_committed_at_once() -> None:
    engine = slow_engine(chunk_delay=0.2)  # ~80 s for the paste if nothing stopped it
    app = fake_app(engine, window=2048, session_name="quitter")
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "kept question")
        await send(pilot, PROSE[:20_000])
        await until(pilot, lambda: app.model_lock.locked() and app.generating)
        started = time.monotonic()
        await pilot.press("ctrl+q")
        await until(pilot, lambda: not app.is_running, steps=1500)
        stopped_in = time.monotonic() - started
    assert app.return_value and "session `quitter` saved (2 messages)" in app.return_value
    assert "localctx chat --session quitter" in app.return_value
    assert stopped_in < 20  # bounded wait, not the prefill's 80 s (not a benchmark: a bound)
    with RecallStore() as store:
        contents = [row[2] for row in store.messages(store.session_id("quitter"))]
    assert contents == ["kept question", "echo: kept question"]


# ------------------------------------------------------------------ 2. the transcript follows
@sync
async def test_sending_brings_the_transcript_back_to_the_newest_output() -> None:
    engine = FakeEngine()
    app = fake_app(engine)
    async with app.run_test(size=(100, 24)) as pilot:
        for i in range(6):
            engine.enqueue(f"answer {i}\n\n" + "line\n\n" * 8)
            await ask(pilot, f"question {i}")
        transcript = app.widget(Transcript)
        assert transcript.max_scroll_y > 0
        transcript.scroll_home(animate=False)
        await pilot.pause()
        assert transcript.scroll_y == 0
        engine.enqueue("the newest answer\n\n" + "more\n\n" * 8)
        await ask(pilot, "one more")
        await pilot.pause(0.1)
        assert transcript.scroll_y == transcript.max_scroll_y
        assert transcript.following


@sync
async def test_pageup_scrolls_from_the_prompt_and_typing_always_reaches_it() -> None:
    engine = FakeEngine()
    app = fake_app(engine)
    async with app.run_test(size=(100, 24)) as pilot:
        for i in range(5):
            engine.enqueue("text\n\n" * 10)
            await ask(pilot, f"q{i}")
        transcript = app.widget(Transcript)
        prompt = app.widget(PromptInput)
        bottom = transcript.scroll_y
        await pilot.press("pageup")
        await pilot.pause()
        assert transcript.scroll_y < bottom and app.focused is prompt
        await pilot.press("ctrl+end")
        await pilot.pause(0.1)
        assert transcript.scroll_y == transcript.max_scroll_y
        assert not transcript.can_focus
        app.set_focus(None)
        await pilot.press("h", "i")
        assert prompt.text == "hi" and app.focused is prompt
        await pilot.click(Transcript)
        await pilot.press("x")
        assert prompt.text == "hix"


# ------------------------------------------------------------------ 3. copy, regenerate, edit
@sync
async def test_copy_the_last_reply_and_its_code_block() -> None:
    engine = FakeEngine()
    reply = "Use this:\n\n```python\nprint('hi')\nprint('there')\n```\n\nDone."
    engine.enqueue("an earlier answer", reply)
    app = fake_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "first")
        await ask(pilot, "show code")
        await pilot.press("ctrl+o")
        assert app.clipboard == reply
        assert (paths.home() / "clipboard.txt").read_text() == reply
        await pilot.press("ctrl+g")
        assert app.clipboard == "print('hi')\nprint('there')\n"
        assert any("copied the last code block" in n for n in notices(app))
        await ask(pilot, "/copy 2")
        assert app.clipboard == "an earlier answer"
        await ask(pilot, "/copy code 2")
        assert any("only 1 code blocks" in n for n in notices(app))
        await ask(pilot, "/copy sideways")
        assert any("usage: /copy" in n for n in notices(app))


@sync
async def test_regenerate_replaces_the_last_answer_with_a_new_one() -> None:
    engine = FakeEngine()
    engine.enqueue("the first answer", "a different answer")
    recorder = Recorder()
    app = fake_app(engine)
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await ask(pilot, "a question")
        cells_after_first = len(engine.tokens)
        await pilot.press("ctrl+r")
        await until(pilot, lambda: len(recorder.of(GenerationFinished)) == 2 and not app.busy)
        await app.workers.wait_for_complete()
        await pilot.pause()
        replies = app.widget(Transcript).query(Reply)
        assert [r.text for r in replies] == ["a different answer"]
        assert len(app.widget(Transcript).query(UserMessage)) == 1
        assert [m["content"] for m in app.session.messages] == ["a question", "a different answer"]
        rows = app.session.store.messages(app.session.session_id)
        assert [r[2] for r in rows] == ["a question", "a different answer"]
        footer = str(app.widget(Transcript).query(ReplyFooter).last().render())
        assert "regenerated (temperature 0.8, seed" in footer
        assert len(engine.tokens) == cells_after_first - len("the first answer") + len(
            "a different answer"
        )


@sync
async def test_edit_the_last_message_and_send_it_in_its_place() -> None:
    app = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "keep this")
        await ask(pilot, "a typo in thsi")
        prompt = app.widget(PromptInput)
        await pilot.press("ctrl+up")
        assert prompt.text == "a typo in thsi" and app.editing
        assert "editing your last message" in str(prompt.border_title)
        assert prompt.cursor_location == prompt.document.end
        prompt.load_text("a typo in this")
        await pilot.press("enter")
        await until(pilot, lambda: not app.generating and not app.busy)
        await app.workers.wait_for_complete()
        await pilot.pause()
        users = [u.text for u in app.widget(Transcript).query(UserMessage)]
        assert users == ["keep this", "a typo in this"]
        assert [m["content"] for m in app.session.messages] == [
            "keep this",
            "echo: keep this",
            "a typo in this",
            "echo: a typo in this",
        ]
        assert not app.editing and not prompt.border_title
        await pilot.press("ctrl+up")
        await pilot.press("escape")  # Esc keeps the old message
        assert not app.editing and prompt.text == ""
        assert len(app.session.messages) == 4


# ------------------------------------------------------------------ 4. sessions you can find
@sync
async def test_sessions_picker_lists_sessions_and_opens_one() -> None:
    app = fake_app(session_name="alpha")
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "alpha question")
        await ask(pilot, "/clear beta")
        await until(pilot, lambda: app.settings.session_name == "beta" and not app.busy)
        assert any("/session alpha" in n for n in notices(app))
        await ask(pilot, "beta question")
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, SessionsScreen) and app.screen.rows)
        screen = app.screen
        assert isinstance(screen, SessionsScreen)
        names = [row.name for row in screen.rows]
        assert names[:2] == ["beta", "alpha"]
        table = screen.query_one(DataTable)
        first = [str(c) for c in table.get_row_at(0)]
        assert first[0] == "●" and "echo: beta question" in first[2] and "2 msg" in first[4]
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.settings.session_name == "alpha" and not app.busy)
        await until(pilot, lambda: bool(app.widget(Transcript).query(UserMessage)))
        assert app.widget(Transcript).query(UserMessage).first().text == "alpha question"
        assert app.widget(StatusLine).session_name == "alpha"


@sync
async def test_clear_starts_a_named_conversation_and_window_and_kv_stay_with_theirs() -> None:
    loaded: list[EngineSettings] = []

    def factory(settings: EngineSettings) -> FakeEngine:
        loaded.append(settings)
        return FakeEngine(settings)

    engine = FakeEngine()
    settings = ChatSettings(engine=engine.settings, model_name="smollm2-135m", session_name="one")
    app = make_app(settings, engine=engine, engine_factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "hello")
        await ask(pilot, "/window 300")
        await until(pilot, lambda: app.settings.window == 300 and not app.busy)
        await ask(pilot, "/clear")
        await until(pilot, lambda: app.settings.session_name != "one" and not app.busy)
        fresh = app.settings.session_name
        assert fresh and any(f"new conversation `{fresh}`" in n for n in notices(app))
        await ask(pilot, "/session one")
        await until(pilot, lambda: app.settings.session_name == "one" and not app.busy)
        assert app.settings.window == 300
        assert tui_state.load_prefs("one").window == 300
        await ask(pilot, "/kv q8_0")
        await until(pilot, lambda: bool(loaded) and not app.busy and app.session is not None)
        assert tui_state.load_prefs("one").kv == "q8_0"
        await ask(pilot, f"/session {fresh}")
        await until(pilot, lambda: app.settings.session_name == fresh and not app.busy)
        await ask(pilot, "/session one")
        await until(pilot, lambda: app.settings.session_name == "one" and not app.busy)
        assert app.settings.engine is not None and app.settings.engine.type_k == "q8_0"
        assert app.widget(StatusLine).kv == "q8_0"


@sync
async def test_the_status_line_names_the_repository_and_what_is_loading(tmp_path: Path) -> None:
    repo = tmp_path / "depot-service"
    repo.mkdir()
    (repo / "depot.py").write_text("def parse_depot(code):\n    return code\n")
    recorder = Recorder()
    app = fake_app()
    async with app.run_test(size=(160, 40), message_hook=recorder) as pilot:
        await ask(pilot, f"/repo {repo}")
        await until(pilot, lambda: app.settings.repo == repo.resolve() and not app.busy)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.widget(StatusLine).repo == "depot-service"
        assert "repo depot-service" in app.widget(StatusLine).render().plain
        started = [m.activity for m in recorder.messages if type(m).__name__ == "WorkStarted"]
        assert "indexing depot-service…" in started and "attaching repo depot-service…" in started
        await ask(pilot, "/session other")
        await until(pilot, lambda: app.settings.session_name == "other" and not app.busy)
        started = [m.activity for m in recorder.messages if type(m).__name__ == "WorkStarted"]
        assert "opening session other…" in started
        assert not any(a == "loading model…" for a in started)


# ------------------------------------------------------------------ 5. models and settings
@sync
async def test_model_picker_shows_installed_and_pullable_models_with_fit(
    smollm_path: Path,
) -> None:
    loaded: list[EngineSettings] = []

    def factory(settings: EngineSettings) -> FakeEngine:
        loaded.append(settings)
        return FakeEngine(settings)

    engine = FakeEngine(EngineSettings(model_path=smollm_path, n_ctx=2048))
    settings = ChatSettings(engine=engine.settings, model_name="gemma3-270m")
    app = make_app(settings, engine=engine, engine_factory=factory)
    async with app.run_test(size=(160, 40)) as pilot:
        await ask(pilot, "/model")
        await until(pilot, lambda: isinstance(app.screen, ModelsScreen) and app.screen.rows)
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        by_name = {entry.name: fit for entry, fit in screen.rows}
        assert by_name["smollm2-135m"].startswith("fits: ctx 2.0K")
        pullable = [e for e, _ in screen.rows if not e.installed]
        assert all(by_name[e.name].startswith("pull") for e in pullable)
        row = [e.name for e, _ in screen.rows].index("smollm2-135m")
        table = screen.query_one(DataTable)
        table.move_cursor(row=row)
        await pilot.press("enter")
        await until(pilot, lambda: bool(loaded) and not app.busy and app.session is not None)
        assert loaded[-1].model_path == smollm_path
        assert app.widget(StatusLine).model == "smollm2-135m"


@sync
async def test_set_changes_reply_length_and_sampling_and_says_when_a_reply_hit_it() -> None:
    engine = FakeEngine()
    engine.enqueue("x" * 50)
    app = fake_app(engine, session_name="s")
    async with app.run_test(size=(140, 40)) as pilot:
        await ask(pilot, "/set max_tokens 10")
        assert "max_tokens 10" in app.widget(Transcript).query(CommandAnswer).last().source
        await ask(pilot, "long please")
        assert app.widget(Transcript).query(Reply).last().text == "x" * 10
        footer = str(app.widget(Transcript).query(ReplyFooter).last().render())
        assert "stopped at max_tokens 10 (/set max_tokens N for longer)" in footer
        await ask(pilot, "/set temperature 0.7")
        assert app.settings.sampling.temperature == 0.7
        assert tui_state.load_prefs("s") == tui_state.SessionPrefs(max_tokens=10, temperature=0.7)
        await ask(pilot, "/set temperature 9")
        await ask(pilot, "/set colour blue")
        assert any("takes 0.0 to 2.0" in n for n in notices(app))
        assert any("usage: /set" in n for n in notices(app))


def test_chat_replies_are_not_cut_at_a_hidden_512() -> None:
    from localctx.cli.chat import CHAT_MAX_TOKENS

    assert CHAT_MAX_TOKENS >= 2048
    assert "max_tokens" in help_markdown() and "/set" in help_markdown()


# ------------------------------------------------------------------ 6. memory screen guards
@sync
async def test_pin_offers_an_excerpt_and_core_memory_is_bounded() -> None:
    app = fake_app(window=1024)
    huge = PROSE[:20_000]
    async with app.run_test(size=(140, 40)) as pilot:
        await ask(pilot, huge)
        await pilot.press("f3")
        await until(pilot, lambda: isinstance(app.screen, MemoryScreen) and app.screen._items)
        screen = app.screen
        assert isinstance(screen, MemoryScreen)
        await until(pilot, lambda: "core memory 0/128 tokens" in str(
            screen.query_one("#memory-title").render()))  # fmt: skip
        index = next(i for i, item in enumerate(screen._items) if len(item.text) > 10_000)
        screen.query_one(DataTable).move_cursor(row=index)
        await pilot.press("ctrl+k")
        await until(pilot, lambda: isinstance(app.screen, PinScreen))
        pin = app.screen
        excerpt = pin.query_one(Input).value
        assert 0 < len(excerpt) <= 300 and "core memory 0/128 tokens" in str(
            pin.query_one("#pin-size").render()
        )
        pin.query_one(Input).value = "the depot code is 4471"
        await pilot.press("enter")
        await until(pilot, lambda: bool(app.session.core))
        await app.workers.wait_for_complete()
        assert [text for _, text in app.session.core] == ["the depot code is 4471"]
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen))
        await ask(pilot, "/remember " + PROSE[:2000])
        assert any("core memory holds 22 of its 128 tokens" in n for n in notices(app))
        assert len(app.session.core) == 1


@sync
async def test_delete_asks_before_forgetting_and_ids_are_not_reused() -> None:
    app = fake_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await ask(pilot, "/remember the staging host is heron")
        await pilot.press("f3")
        await until(pilot, lambda: isinstance(app.screen, MemoryScreen) and app.screen._items)
        await pilot.press("delete")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, MemoryScreen))
        assert app.session.core
        await pilot.press("delete")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: not app.session.core)
        await app.workers.wait_for_complete()
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen))
        await ask(pilot, "/remember a second fact")
        assert [cid for cid, _ in app.session.core] == [2]  # c1 stays retired


# ------------------------------------------------------------------ 7. errors do not vanish
@sync
async def test_results_and_errors_stay_in_the_transcript() -> None:
    app = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "/sesions")
        await ask(pilot, "/ingest /no/such/dir")
        kept = notices(app)
        assert any("unknown command /sesions (did you mean /sessions?)" in n for n in kept)
        assert any("no such directory" in n for n in kept)
        error = app.widget(Transcript).query(Notice).last()
        assert error.has_class("error")


# ------------------------------------------------------------------ 8. narrow terminals
@sync
async def test_at_60_columns_the_state_comes_first_on_the_status_line() -> None:
    app = fake_app(session_name="a-long-session-name-that-does-not-fit")
    async with app.run_test(size=(60, 20)) as pilot:
        await ask(pilot, "hi")
        status = app.widget(StatusLine)
        assert status.region.width == 60
        shown = status.render().plain[: status.region.width - 2]  # what fits (padding 1 + 1)
        assert shown.startswith("○ ready")
        assert "a-long-session-name" not in shown  # the end is what is cut


# ------------------------------------------------------------------ 9. gauge details
@sync
async def test_the_gauge_keeps_the_turns_tok_s_while_summaries_run() -> None:
    engine = slow_engine(n_ctx=1024, chunk_delay=0.0, token_delay=0.002)
    recorder = Recorder()
    app = fake_app(engine, window=600, gauge_busy_interval=0.05)
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        for i in range(3):
            await ask(pilot, f"turn {i} " + PROSE[i * 600 : i * 600 + 500])
        figures = recorder.of(GenerationFinished)[-1].figures
        app._last_sample = 0.0
        await until(pilot, lambda: app.readings > 0)
        readings = app.readings
        await until(pilot, lambda: app.readings > readings)
        view = app.widget(GaugePanel).view
        assert (
            view.decode_tps == figures.result.decode_tps
            and view.prefill_tps == figures.result.prefill_tps
        )
        assert view.evictions > 0


def test_every_key_is_documented_in_f1() -> None:
    text = help_markdown().lower()
    documented = {part.strip().lower() for key, _ in KEYS for part in key.split("/")}
    for binding in [*LocalctxApp.BINDINGS, *ChatScreen.BINDINGS]:
        for key in binding.key.split(","):  # type: ignore[union-attr]
            assert key.replace("escape", "esc") in documented, key
    for binding in MemoryScreen.BINDINGS:
        key = binding.key  # type: ignore[union-attr]
        assert key in ("escape", "f3", "ctrl+r") or f"`{key}`" in text, key


@sync
async def test_recall_echoes_its_query_and_keeps_code_lines(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "depot.py").write_text(
        "def parse_depot(code):\n    '''Return the depot.'''\n    depot = code.strip()\n"
        "    return depot\n"
    )
    app = fake_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await ask(pilot, f"/repo {repo}")
        await until(pilot, lambda: app.settings.repo == repo.resolve() and not app.busy)
        await ask(pilot, "/recall parse_depot")
        answer = app.widget(Transcript).query(CommandAnswer).last().source
        assert answer.startswith("**/recall parse_depot**")
        assert "found for 'parse_depot'" in answer
        assert "  def parse_depot(code):\n      '''Return the depot.'''" in answer


@sync
async def test_history_puts_the_cursor_at_the_end_and_survives_a_restart() -> None:
    app = fake_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ask(pilot, "the first prompt")
    again = fake_app()
    async with again.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        prompt = again.widget(PromptInput)
        prompt.focus()
        await pilot.press("up")
        assert prompt.text == "the first prompt"
        assert prompt.cursor_location == (0, len("the first prompt"))


# ------------------------------------------------------------------ 10. chat over which directory
@pytest.mark.parametrize(
    ("layout", "cwd", "expected"),
    [
        ("home/proj/.git", "home/proj", "home/proj"),
        ("home/proj/.git", "home/proj/src", "home/proj/src"),
        ("home/.git", "home", None),  # a dotfiles repository: the home is never attached
        ("home/.git", "home/notes", None),
        ("home/notes", "home/notes", None),  # not a repository
        ("work/repo/.git", "work/repo", "work/repo"),
        ("home/x", "", None),  # the root, above the home
    ],
)
def test_chat_attaches_the_current_directory_only_when_it_is_a_repository(
    tmp_path: Path, layout: str, cwd: str, expected: str | None
) -> None:
    from localctx.cli.chat import default_repo

    (tmp_path / layout).mkdir(parents=True)
    found = default_repo(tmp_path / cwd, tmp_path / "home")
    assert found == ((tmp_path / expected).resolve() if expected else None)


def test_chat_help_says_which_directory_it_chats_over() -> None:
    from click.testing import CliRunner

    from localctx.cli import main

    out = CliRunner().invoke(main, ["chat", "--help"]).output
    assert "git repository" in out and "home directory" in out and "--no-repo" in out
    assert "--max-tokens" in out and "--temperature" in out


@sync
async def test_a_stopped_reply_leaves_ready_stopped_on_the_status_line() -> None:
    engine = FakeEngine(token_delay=0.01)
    engine.enqueue("x" * 2000)
    recorder = Recorder()
    app = fake_app(engine)
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await send(pilot, "long one")
        await until(pilot, lambda: app._streamed_tokens > 0)
        await pilot.press("escape")
        await until(pilot, lambda: bool(recorder.of(WorkFinished)) and not app.busy)
        assert app.widget(StatusLine).activity == "ready · stopped"
        await ask(pilot, "next")
        assert app.widget(StatusLine).activity == "ready"


@sync
async def test_a_resumed_session_redraws_its_history_even_when_it_has_notices() -> None:
    app = fake_app(session_name="again", window=1024)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "remember the lighthouse")
        await pilot.press("ctrl+q")
        await until(pilot, lambda: not app.is_running)
    resumed = fake_app(session_name="again", window=512)  # other settings: a notice
    async with resumed.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await until(pilot, lambda: bool(resumed.widget(Transcript).query(UserMessage)))
        await until(pilot, lambda: bool(notices(resumed)))
        assert resumed.widget(Transcript).query(UserMessage).first().text == (
            "remember the lighthouse"
        )
        assert any("recomputing" in n for n in notices(resumed))
