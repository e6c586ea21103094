"""The TUI's pure decisions: command parsing, token batching, bar arithmetic, history, views."""

from __future__ import annotations

from pathlib import Path

from localctx.engine.base import EngineSettings
from localctx.engine.fake import FakeEngine
from localctx.gauge import GaugeReading, KvReading, RamReading
from localctx.memory.archival import ArchivalHit
from localctx.memory.recall import RecallHit, RecallStore
from localctx.memory.retrieval import RecalledItem
from localctx.planner.devices import GpuMemory
from localctx.session import EvictionReport, Session
from localctx.tui.commands import COMMANDS, Command, CommandError, is_command, parse_command
from localctx.tui.streaming import TokenBatcher
from localctx.tui.views import context_view, gauge_view, snippet_of
from localctx.tui.widgets.chat.prompt import PromptHistory
from localctx.tui.widgets.chat.transcript import PREVIEW_CHARS, preview
from localctx.tui.widgets.gauge.bars import human_bytes, human_count, split_columns


def test_is_command_needs_a_letter_after_the_slash() -> None:
    assert is_command("/help")
    assert is_command("  /kv q8_0")
    assert not is_command("/ not a command")
    assert not is_command("/")
    assert not is_command("what does /etc/passwd hold?")


def test_parse_command_accepts_every_listed_command() -> None:
    for name, spec in COMMANDS.items():
        arg = {"text": "x", "int": "5", "opt": "", "": ""}[spec.arg]
        parsed = parse_command(f"/{name} {arg}".strip())
        assert parsed == Command(name, arg), name


def test_parse_command_rejects_bad_input_with_a_hint() -> None:
    unknown = parse_command("/hepl")
    assert isinstance(unknown, CommandError) and "/help" in unknown.message
    assert "did you mean /help" in unknown.message
    assert parse_command("/ingest") == CommandError("usage: /ingest PATH")
    window = parse_command("/window lots")
    assert isinstance(window, CommandError) and "positive whole number" in window.message
    assert isinstance(parse_command("/window 0"), CommandError)
    assert isinstance(parse_command("/plan everything"), CommandError)
    assert parse_command("/clear release-notes") == Command("clear", "release-notes")
    assert parse_command("/KV Q8_0") == Command("kv", "Q8_0")


def test_token_batcher_flushes_first_token_then_by_interval() -> None:
    batcher = TokenBatcher(0.15)
    assert batcher.add("a", 0.0) == ("a", 1)
    assert batcher.add("b", 0.05) is None
    assert batcher.add("c", 0.10) is None
    assert batcher.add("d", 0.16) == ("bcd", 3)
    assert batcher.add("e", 0.20) is None
    assert batcher.flush() == ("e", 1)
    assert batcher.flush() is None
    assert batcher.total_tokens == 5


def test_token_batcher_bounds_updates_per_second() -> None:
    batcher = TokenBatcher(0.15)
    flushes = sum(batcher.add("x", i / 100) is not None for i in range(300))  # 100 tok/s, 3 s
    assert flushes <= 3 / 0.15 + 1


def test_split_columns_keeps_small_regions_visible() -> None:
    cols = split_columns([4, 120, 0, 980, 7088], 30)
    assert sum(cols) == 30
    assert cols[0] >= 1 and cols[1] >= 1 and cols[2] == 0
    assert cols[4] > cols[3]
    assert split_columns([0, 0], 10) == [0, 0]
    assert split_columns([1, 1], 0) == [0, 0]
    assert sum(split_columns([1, 2, 3], 7)) == 7


def test_human_units() -> None:
    assert human_bytes(None) == "—"
    assert human_bytes(512) == "512 B"
    assert human_bytes(23_053 * 8192) == "180.1 MiB"
    assert human_count(987) == "987"
    assert human_count(12_400) == "12.4K"
    assert human_count(1_200_000) == "1.2M"


def test_prompt_history_walks_back_and_restores_the_draft() -> None:
    history = PromptHistory()
    history.push("first")
    history.push("second")
    history.push("second")  # repeats are not stored twice
    assert history.entries == ["first", "second"]
    assert history.previous("draft") == "second"
    assert history.previous("second") == "first"
    assert history.previous("first") is None
    assert history.next() == "second"
    assert history.next() == "draft"
    assert history.next() is None


def test_preview_keeps_short_text_and_cuts_a_paste() -> None:
    assert preview("short") == "short"
    big = "word " * 40_000
    shown = preview(big)
    assert len(shown) < PREVIEW_CHARS + 200
    assert "KiB" in shown and "sent whole to the model" in shown


def _reading(vram: tuple[GpuMemory, ...] | None = None) -> GaugeReading:
    kv = KvReading(
        n_ctx=100,
        cells_used=50,
        regions={"sink": 4, "pinned": 10, "recalled": 6, "window": 30, "free": 50},
        spans={},
        total_bytes=200,
        used_bytes=100,
        bytes_per_token=2.0,
        type_k="q8_0",
        type_v="q8_0",
        window=64,
        tokens_seen=400,
        evictions=3,
        evicted_tokens=300,
        fallback_used=False,
        policy="snapkv",
        gaps=7,
    )
    return GaugeReading(
        taken_at=0.0,
        rss_bytes=300,
        ram=RamReading(1000, 3000, 4000),
        backend="cpu",
        gpu_offload=False,
        layers_offloaded=0,
        layers_total=31,
        vram=vram,
        unified_memory=None,
        kv=kv,
        prefill_tps=197.0,
        decode_tps=29.5,
        prefill_tokens=10,
        decode_tokens=20,
        store_bytes={"db": 4096, "snapshots": 0, "total": 4096},
    )


def test_gauge_view_reads_a_gauge_reading() -> None:
    gpus = (GpuMemory(0, "a", 10, 100), GpuMemory(1, "b", 5, 100))
    for reading in (_reading(gpus),):
        view = gauge_view(reading)
        assert view.cells_held == 50 and view.kv_used_bytes == 100 and view.kv_bytes == 200
        assert view.kv_cells["sink"] == 4 and view.kv_cells["free"] == 50
        assert view.vram_used == 15 and view.vram_total == 200
        assert view.rss_bytes == 300 and view.ram_used == 1000 and view.ram_total == 4000
        assert view.evictions == 3 and view.tokens_seen == 400 and view.window == 64
        assert view.kv_type == "q8_0" and view.decode_tps == 29.5
        assert view.tiers["db"] == 4096
        assert (view.policy, view.gaps) == ("snapkv", 7)
    assert gauge_view(_reading()).vram_total is None
    empty = gauge_view(None)
    assert empty.cells_held == 0 and empty.backend == "—"


def test_context_view_reads_what_the_session_has(tmp_path: Path) -> None:
    assert context_view(None).recalled == ()
    engine = FakeEngine(EngineSettings(model_path=Path("fake.gguf"), n_ctx=2048))
    session = Session(engine, store=RecallStore(tmp_path / "recall.sqlite3"), name="t")
    session.last_recall = [
        RecalledItem("archival", "repo:src/app.py:10-42", "def main(): ...", 3.0, 12),
        RecalledItem("recall", "s3", "we chose q8_0", 2.0, 5),
    ]
    session.running_summary = "The user asked about KV types."
    session.last_eviction = EvictionReport(7, 512, "The first   message was long", None)
    session.core = [(1, "the depot code is 4471")]
    view = context_view(session)
    assert [s.source for s in view.recalled] == ["src/app.py:10-42", "segment s3"]
    assert view.recalled[0].tokens == 12
    assert view.summary.startswith("The user")
    assert view.eviction == "segment s7: 512 tokens"
    assert view.eviction_text == "The first message was long"
    assert view.eviction_summary is None and view.summaries_written
    assert view.pinned == ("the depot code is 4471",)
    assert view.core_tokens == session.core_tokens() > 0
    session.last_eviction = EvictionReport(8, 128, "scattered … cells", None, runs=5)
    assert context_view(session).eviction == "segment s8: 128 tokens in 5 scattered runs"
    assert context_view(Session(engine)).summaries_written is False  # no store


def test_source_labels_for_store_hits() -> None:
    hit = RecallHit("m12", "message", "user: hi", "", 1.0, "demo")
    assert snippet_of(hit).source == "message m12 · session demo"
    chunk = ArchivalHit("/r", "a.py", 3, 9, "main", "python", "def main(): ...", 1.0)
    assert snippet_of(chunk).source == "a.py:3-9 · main"
    assert snippet_of("plain").source == "memory"
