"""SVG snapshots of the chat and memory screens at a pinned terminal size.

Everything on screen is fixed: a FakeEngine, a session resumed with known messages and known
"what the model sees" state, and a gauge reading that never changes. Update after an intended
change with `pytest tests/test_tui_snapshots.py --snapshot-update` and look at the SVGs.
"""

from __future__ import annotations

import time
from calendar import timegm
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from localctx.engine.base import ChatMessage
from localctx.engine.fake import FakeEngine
from localctx.gauge import GaugeReading, KvReading, RamReading
from localctx.memory.archival import ArchivalHit
from localctx.memory.recall import RecallHit, SessionSummary
from localctx.memory.retrieval import RecalledItem
from localctx.progress import Progress
from localctx.session import EvictionReport, Session
from localctx.tui import ChatSettings, LocalctxApp, make_app
from localctx.tui.messages import WorkProgressed, WorkStarted
from localctx.tui.screens.memory import MemoryScreen
from localctx.tui.screens.sessions import SessionsScreen
from localctx.tui.widgets.chat.prompt import PromptInput
from localctx.tui.widgets.context.panel import ContextPanel

READING = GaugeReading(
    taken_at=0.0,
    rss_bytes=412 * 2**20,
    ram=RamReading(6 * 2**30, 10 * 2**30, 16 * 2**30),
    backend="cpu",
    gpu_offload=False,
    layers_offloaded=0,
    layers_total=31,
    vram=None,
    unified_memory=None,
    kv=KvReading(
        n_ctx=8192,
        cells_used=1796,
        regions={"sink": 4, "pinned": 380, "recalled": 512, "window": 900, "free": 252},
        spans={},
        total_bytes=8192 * 23_053,
        used_bytes=1796 * 23_053,
        bytes_per_token=23_053,
        type_k="f16",
        type_v="f16",
        window=2048,
        tokens_seen=14_230,
        evictions=6,
        evicted_tokens=11_434,
        fallback_used=False,
    ),
    prefill_tps=197.0,
    decode_tps=29.4,
    prefill_tokens=420,
    decode_tokens=96,
    store_bytes={"db": 3_400_000, "snapshots": 48_000_000, "total": 51_400_000},
)

MESSAGES = [
    {"role": "user", "content": "Where is the KV cache freed?"},
    {
        "role": "assistant",
        "content": "In `LlamaEngine.close()`: the context is freed before the model.\n\n"
        "```python\ndef close(self) -> None:\n    if self._ctx:\n"
        "        llama_free(self._ctx)\n```",
    },
]


PASTE = (Path(__file__).parent / "data" / "devils-dictionary-excerpt.txt").read_text()[:20_000]


class FixedReadings:
    def sample(self) -> GaugeReading:
        return READING


class ResumedSession(Session):
    """A session as the memory tier leaves it after a few evictions (fixed, for the picture)."""

    def __init__(self, engine: FakeEngine) -> None:
        super().__init__(engine, messages=[ChatMessage(**m) for m in MESSAGES])  # type: ignore[typeddict-item]
        self.last_recall = [
            RecalledItem(
                "archival",
                "repo:localctx/engine/llama.py:402-415",
                'def close(self) -> None:\n    """Free the context, then the model."""',
                4.2,
                31,
            ),
            RecalledItem("recall", "s4", "We agreed to keep q8_0 for 32K contexts.", 2.5, 11),
        ]
        self.running_summary = "The user is reading the engine's resource handling; q8_0 chosen."
        self.last_eviction = EvictionReport(
            6, 512, "Why does shifting re-quantize K? Because …", None
        )
        self.last_eviction.summary = "Discussed why shifting re-quantizes K."
        self.core = [(1, "The depot code is 4471.")]


def snapshot_app() -> LocalctxApp:
    engine = FakeEngine()
    session = ResumedSession(engine)
    settings = ChatSettings(engine=engine.settings, model_name="smollm2-135m", window=2048)
    return make_app(
        settings,
        engine=engine,
        session_factory=lambda e, s: session,
        sampler_factory=lambda e, s: FixedReadings(),
    )


async def settle(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, LocalctxApp)
    for _ in range(200):
        panels = app.screen.query(ContextPanel)
        shown = all(panel.view.recalled for panel in panels)
        if app.session is not None and app.readings and shown:
            break
        await pilot.pause(0.02)
    await app.workers.wait_for_complete()
    app.widget(PromptInput).cursor_blink = False
    # The context panel's height depends on how its text wraps: let the layout it triggers
    # finish (on a busy machine one pause was not always enough).
    for _ in range(3):
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()


def test_chat_screen(snap_compare: Any) -> None:
    assert snap_compare(snapshot_app(), terminal_size=(120, 40), run_before=settle)


def test_chat_screen_small_terminal(snap_compare: Any) -> None:
    assert snap_compare(snapshot_app(), terminal_size=(60, 20), run_before=settle)


async def reading_a_long_paste(pilot: Pilot[Any]) -> None:
    """The state while a 20 KB paste is read: progress first on the status line, the size of
    the next draft in the prompt's border (fixed figures: no clock is involved)."""
    await settle(pilot)
    app = pilot.app
    assert isinstance(app, LocalctxApp)
    app.post_message(WorkStarted("reading the prompt…", 99))
    app.post_message(WorkProgressed(Progress("reading the prompt", 1536, 5133, seconds=9.0), 99))
    app.widget(PromptInput).load_text(PASTE)
    for _ in range(3):
        await pilot.pause()


def test_chat_screen_while_a_long_paste_is_read(snap_compare: Any) -> None:
    assert snap_compare(snapshot_app(), terminal_size=(60, 20), run_before=reading_a_long_paste)


def test_chat_screen_while_a_long_paste_is_read_wide(snap_compare: Any) -> None:
    assert snap_compare(snapshot_app(), terminal_size=(120, 40), run_before=reading_a_long_paste)


def test_sessions_picker(snap_compare: Any) -> None:
    rows = [
        SessionSummary("release-notes", "", "2026-05-09 10:00:00", "2026-05-09 11:58:00", 14,
                       9_800, "assistant", "The changelog now lists the three breaking changes."),
        SessionSummary("kv-tuning", "", "2026-05-08 09:00:00", "2026-05-08 17:30:00", 40,
                       61_000, "user", "Why does q4_0 prefill so slowly on the CPU?"),
        SessionSummary("session-20260501-080000-1a2b", "", "2026-05-01 08:00:00",
                       "2026-05-01 08:02:00", 2, 120, "assistant", "Paris."),
    ]  # fmt: skip
    now = timegm(time.strptime("2026-05-09 12:00:00", "%Y-%m-%d %H:%M:%S"))

    async def open_sessions(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        app = pilot.app
        assert isinstance(app, LocalctxApp)
        await app.push_screen(SessionsScreen("release-notes", rows=rows, now=now))
        await pilot.pause()

    assert snap_compare(snapshot_app(), terminal_size=(120, 40), run_before=open_sessions)


def test_memory_screen(snap_compare: Any) -> None:
    rows = [
        RecallHit("c12", "core", "The depot code is 4471.", "", 0.0),
        RecallHit("s31", "segment", "We agreed to keep q8_0 for 32K contexts.",
                  "Chose q8_0 KV for long contexts.", 0.0, "demo"),
        RecallHit("m40", "message", "user: where is the KV cache freed?", "", 0.0, "demo"),
        ArchivalHit("/repo", "localctx/engine/llama.py", 402, 415, "close", "python",
                    "def close(self) -> None: ...", 0.0),
    ]  # fmt: skip

    async def open_memory(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        app = pilot.app
        assert isinstance(app, LocalctxApp)
        await app.push_screen(MemoryScreen(app.session, rows=rows))
        await pilot.pause()

    assert snap_compare(snapshot_app(), terminal_size=(120, 30), run_before=open_memory)
