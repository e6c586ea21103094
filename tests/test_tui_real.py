"""The chat app on the real default model (SmolLM2-135M): a question streams a non-empty
answer, and the gauge's KV bar moves because the cache really filled."""

from __future__ import annotations

from pathlib import Path

import pytest

from localctx.engine import EngineSettings, load_engine
from localctx.tui import ChatSettings, make_app
from localctx.tui.messages import GaugeSampled, TokensGenerated
from localctx.tui.widgets.chat.transcript import Reply, ReplyFooter
from localctx.tui.widgets.gauge.panel import GaugePanel
from tests.test_tui import Recorder, ask, ready, sync, until

pytestmark = pytest.mark.real


@sync
async def test_real_model_streams_an_answer_and_the_kv_bar_moves(smollm_path: Path) -> None:
    settings = ChatSettings(
        engine=EngineSettings(model_path=smollm_path, n_ctx=2048),
        model_name="smollm2-135m",
        window=512,
        gauge_busy_interval=0.2,
    )
    recorder = Recorder()
    app = make_app(settings, engine_factory=load_engine)
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await ready(pilot)
        await until(pilot, lambda: app.readings > 0)
        before = app.widget(GaugePanel).view
        await ask(pilot, "What is the capital of France? Answer in one sentence.")
        reply = app.screen.query_one(Reply)
        assert reply.text.strip()
        assert "Paris" in reply.text
        assert recorder.of(TokensGenerated)
        assert "reply tokens" in str(app.screen.query_one(ReplyFooter).render())
        await until(pilot, lambda: app.widget(GaugePanel).view.cells_held > before.cells_held)
        after = app.widget(GaugePanel).view
        assert after.kv_cells["window"] > before.kv_cells["window"]
        assert after.kv_cells["sink"] == 4 and after.kv_cells["pinned"] > 0
        assert after.kv_used_bytes and after.kv_used_bytes > (before.kv_used_bytes or 0)
        assert after.window == 512 and after.bytes_per_token
        assert all(r.reading.kv.n_ctx == 2048 for r in recorder.of(GaugeSampled))
        await pilot.press("ctrl+q")
        await until(pilot, lambda: not app.is_running)
    assert app.return_value and "saved (2 messages)" in app.return_value


@sync
async def test_real_model_paste_shows_prefill_progress_and_regenerate_gives_a_new_reply(
    smollm_path: Path,
) -> None:
    from localctx.engine import Sampling
    from localctx.session import Session
    from localctx.tui.messages import GenerationFinished, PromptWithdrawn, WorkProgressed
    from localctx.tui.widgets.chat.prompt import PromptInput
    from localctx.tui.widgets.chat.status import StatusLine
    from localctx.tui.widgets.chat.transcript import Transcript

    text = (Path(__file__).parent / "data" / "devils-dictionary-excerpt.txt").read_text()
    settings = ChatSettings(
        engine=EngineSettings(model_path=smollm_path, n_ctx=1024, n_batch=128),
        model_name="smollm2-135m",
        window=256,
        sampling=Sampling(max_tokens=24),
    )
    recorder = Recorder()
    # Without stores: no summaries after each turn (tui_check.sh runs the stored session).
    app = make_app(
        settings,
        engine_factory=load_engine,
        session_factory=lambda engine, s: Session(engine, window=s.window),
    )
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await ask(pilot, text[30_000:32_400] + "\n\nWhat is the text above about?")
        prompt = [m.progress for m in recorder.of(WorkProgressed)]
        prompt = [p for p in prompt if p.stage == "reading the prompt"]
        done = [p.done for p in prompt]
        assert len(done) >= 3 and done == sorted(done)  # one report per batch, in order
        assert prompt[-1].done == prompt[-1].total > 512  # 2+ windows of 256 went through
        first = app.widget(Transcript).query(Reply).last().text
        assert first.strip()

        await pilot.press("ctrl+r")
        await until(pilot, lambda: len(recorder.of(GenerationFinished)) == 2, steps=6000)
        await until(pilot, lambda: not app.busy, steps=6000)
        await app.workers.wait_for_complete()
        second = app.widget(Transcript).query(Reply).last().text
        assert app.session.messages[-1]["content"].strip()  # a reply, not "(no reply)"
        assert second.strip() and second != first  # sampled anew (temperature 0.8)
        assert recorder.of(GenerationFinished)[-1].figures.result.completion_tokens > 0
        reads = [p for p in recorder.of(WorkProgressed) if p.progress.stage == "reading the prompt"]
        assert len(reads) == len(prompt)  # the paste was not read again to answer anew
        assert len(app.widget(Transcript).query(Reply)) == 1
        assert "regenerated" in str(app.widget(Transcript).query(ReplyFooter).last().render())

        # A second long paste, stopped while it is read: nothing of it stays.
        cells = app.engine.tokens
        box = app.widget(PromptInput)
        box.load_text(text[40_000:42_400])
        await pilot.press("enter")
        await until(pilot, lambda: len(recorder.of(WorkProgressed)) > len(prompt) + 2)
        await pilot.press("escape")
        await until(pilot, lambda: bool(recorder.of(PromptWithdrawn)) and not app.busy)
        await app.workers.wait_for_complete()
        assert app.engine.tokens == cells
        assert [m["role"] for m in app.session.messages] == ["user", "assistant"]
        assert app.widget(StatusLine).activity == "ready · stopped"
