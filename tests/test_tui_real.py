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
