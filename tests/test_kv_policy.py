"""SinkWindow bookkeeping on the fake engine (bytes as tokens); the real model is in
test_kv_policy_real.py. These pin the rules that do not depend on the model."""

from __future__ import annotations

import itertools
import logging

import pytest

from localctx.engine.fake import FakeEngine
from localctx.errors import BadInput
from localctx.kv.policy import SinkWindow
from localctx.kv.segment import EvictedSegment


def _feed(window: SinkWindow, messages: list[tuple[int, str, bytes]]) -> list[int]:
    fed: list[int] = []
    for mid, kind, text in messages:
        window.begin_message(mid, kind)
        window.decode(list(text))
        fed.extend(text)
    return fed


def _check_exactly_once(
    window: SinkWindow, engine: FakeEngine, fed: list[int], segments: list[EvictedSegment]
) -> None:
    """protected + every segment in order + the rolling part == everything fed, once."""
    keep = window.protected_end
    cached = engine.tokens
    evicted = [t for s in segments for t in s.tokens]
    assert cached[:keep] + evicted + cached[keep:] == fed
    assert [s.seq for s in segments] == list(range(len(segments)))
    for a, b in itertools.pairwise(segments):
        assert b.stream_start == a.stream_end  # stream indices tile the evicted stream
    for s in segments:
        assert s.stream_end - s.stream_start == s.n_tokens
        assert s.text == engine.detokenize(s.tokens)
        assert s.positions == (keep, keep + s.n_tokens)
        assert fed[s.stream_start : s.stream_end] == list(s.tokens)


def test_messages_stream_through_a_bounded_window_and_every_token_is_accounted() -> None:
    engine = FakeEngine()
    peaks: list[int] = []
    window = SinkWindow(engine, window=96, n_sink=4)
    inner = window.make_room

    def watched(n: int) -> None:
        inner(n)
        peaks.append(engine.cells_used + n)

    window.make_room = watched  # type: ignore[method-assign]
    system = b"SYSTEM: be brief. "
    fed = _feed(window, [(0, "message", system)])
    window.set_pinned_end(engine.n_past)
    fed += _feed(
        window,
        [(i, "message", b"turn %d: the quick brown fox jumps. " % i) for i in range(1, 40)],
    )
    segments = window.queue.drain()
    assert segments and max(peaks) <= 96
    assert engine.tokens[: len(system)] == list(system)  # sinks + pinned never evicted
    _check_exactly_once(window, engine, fed, segments)
    # Evictions end on message boundaries here (every message is shorter than a block).
    for s in segments:
        assert s.text.startswith("turn ") and s.text.endswith(". ")
    stats = window.stats()
    assert stats.cells_used == engine.cells_used <= stats.window
    assert stats.evictions == len(segments)
    assert stats.evicted_tokens == sum(s.n_tokens for s in segments)
    assert stats.tokens_seen == len(fed)
    assert stats.n_sink + stats.pinned + stats.recalled + stats.window_cells == stats.cells_used
    assert stats.free == 96 - stats.cells_used
    assert stats.peak_cells <= 96
    assert stats.bytes_per_token == 1024  # the fake engine's allocation / its cells


def test_regions_and_recalled_snippets() -> None:
    engine = FakeEngine()
    window = SinkWindow(engine, window=200, n_sink=4)
    _feed(window, [(0, "message", b"sys prompt.")])
    window.set_pinned_end(engine.n_past)
    _feed(window, [(7, "recalled", b"[recalled: old fact]"), (8, "message", b"hello there")])
    regions = window.regions
    assert regions["sink"] == (0, 4)
    assert regions["pinned"] == (4, 11)
    assert regions["recalled"] == (11, 31)
    assert regions["window"] == (11, 42)
    stats = window.stats()
    assert (stats.n_sink, stats.pinned, stats.recalled, stats.window_cells) == (4, 7, 20, 11)
    assert stats.to_json()["recalled"] == 20


def test_a_long_current_message_is_cut_only_when_nothing_else_is_left() -> None:
    engine = FakeEngine()
    window = SinkWindow(engine, window=64, n_sink=4, block=16)
    fed = _feed(window, [(1, "message", b"short one. "), (2, "message", b"x" * 200)])
    segments = window.queue.drain()
    assert segments[0].message_ids == (1,)
    assert segments[0].text == "t one. "  # the earlier message first, whole ("shor" = sinks)
    assert all(s.message_ids == (2,) for s in segments[1:])
    _check_exactly_once(window, engine, fed, segments)


def test_a_rewound_tail_is_not_reported_as_evicted() -> None:
    engine = FakeEngine()
    window = SinkWindow(engine, window=64, n_sink=4)
    fed = _feed(window, [(1, "message", b"a" * 50), (2, "message", b"b" * 30)])
    engine.kv_remove(engine.n_past - 10, -1)  # the caller drops its last 10 tokens
    fed = fed[:-10]
    fed += _feed(window, [(3, "message", b"c" * 40)])
    _check_exactly_once(window, engine, fed, window.queue.drain())
    assert window.stats().tokens_seen == len(fed)


def test_fallback_reprefills_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    engine = FakeEngine(can_shift=False)
    window = SinkWindow(engine, window=64, n_sink=4)
    assert window.block == 32  # half the window: re-prefill is the expensive path
    with caplog.at_level(logging.WARNING, logger="localctx.kv"):
        fed = _feed(window, [(i, "message", b"message %02d here. " % i) for i in range(20)])
    stats = window.stats()
    assert stats.fallback_used and stats.mode == "reprefill"
    assert "M-RoPE" in stats.fallback_reason
    assert stats.evictions >= 3 and stats.peak_cells <= 64
    assert len([r for r in caplog.records if r.name == "localctx.kv"]) == 1
    _check_exactly_once(window, engine, fed, window.queue.drain())


def test_forced_fallback_on_a_shifting_engine() -> None:
    engine = FakeEngine()
    window = SinkWindow(engine, window=40, n_sink=2, force_fallback=True)
    fed = _feed(window, [(1, "message", bytes(range(65, 65 + 26)) * 4)])
    assert window.stats().fallback_reason.startswith("forced")
    _check_exactly_once(window, engine, fed, window.queue.drain())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 64, "n_sink": -1}, "sinks must be 0 or more"),
        ({"window": 10, "n_sink": 4}, "smaller than 4 sinks"),
        ({"window": 8192, "n_sink": 4}, "larger than the context"),
        ({"window": 64, "n_sink": 4, "block": 0}, "block"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(BadInput, match=match):
        SinkWindow(FakeEngine(), **kwargs)  # type: ignore[arg-type]


def test_a_pinned_region_that_leaves_no_batch_is_refused() -> None:
    window = SinkWindow(FakeEngine(), window=64, n_sink=4)
    with pytest.raises(BadInput, match="pinned"):
        window.set_pinned_end(60)


def test_a_batch_larger_than_the_rolling_part_is_refused() -> None:
    engine = FakeEngine()
    window = SinkWindow(engine, window=64, n_sink=4)
    window.decode(list(b"z" * 30))
    with pytest.raises(BadInput, match="cannot fit"):
        window.make_room(61)
    window.decode(list(b"y" * 200))  # decode() splits what make_room cannot take at once
    assert engine.cells_used <= 64


def _scanned_recalled(window: SinkWindow) -> tuple[int, tuple[int, int] | None]:
    """What the running recalled runs must equal: a scan of every position's kind."""
    pinned_end = max(
        min(window.n_sink, len(window._kind)), min(window._pinned_end, len(window._kind))
    )
    cells = [p for p in range(pinned_end, len(window._kind)) if window._kind[p] == "recalled"]
    return len(cells), ((cells[0], cells[-1] + 1) if cells else None)


@pytest.mark.parametrize("seed", range(12))
def test_recalled_counts_stay_equal_to_a_scan_through_evictions_and_rewinds(seed: int) -> None:
    import random

    rng = random.Random(seed)
    engine = FakeEngine()
    window = SinkWindow(engine, window=160, n_sink=4, block=24)
    window.begin_message(0, "message")
    window.decode(list(b"pinned system text."))
    window.set_pinned_end(10)
    for mid in range(1, 60):
        kind = "recalled" if rng.random() < 0.35 else "message"
        window.begin_message(mid, kind)
        window.decode([rng.randrange(32, 120) for _ in range(rng.randrange(1, 40))])
        if rng.random() < 0.15 and engine.n_past > window.protected_end + 3:  # rewind a tail
            engine.kv_remove(engine.n_past - rng.randrange(1, 3), -1)
        stats, regions = window.stats(), window.regions
        count, span = _scanned_recalled(window)
        assert stats.recalled == count
        if span is not None:
            assert regions["recalled"] == span
    assert window.stats().evictions > 0
