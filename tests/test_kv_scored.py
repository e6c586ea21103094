"""Scored eviction (kv/scoring.py, kv/attention.py, planner.plan_scored): pure and fake-engine
tests. The real-model tests are in test_kv_scored_real.py."""

from __future__ import annotations

import logging
import random
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from localctx.context.ledger import ContextLedger
from localctx.engine import EngineSettings, queries
from localctx.engine.fake import FakeEngine
from localctx.engine.kvstate import STATE_MAGIC, parse_keys
from localctx.engine.positions import PositionMirror
from localctx.errors import BadInput, EngineFailed
from localctx.kv.attention import (
    HeavyHitterScorer,
    SnapKvScorer,
    attention_received,
    max_pool,
)
from localctx.kv.plans import CacheLayout, apply_ops, plan_scored, run_ops
from localctx.kv.policy import SinkWindow
from localctx.kv.scoring import KeyNormScorer, make_scorer
from localctx.session import Session


def _layout(n_past: int, protected: int) -> CacheLayout:
    return CacheLayout(n_past=n_past, protected_end=protected)


@pytest.mark.parametrize("seed", range(40))
def test_plan_scored_never_touches_protected_or_recent_cells(seed: int) -> None:
    rng = random.Random(seed)
    window = rng.randrange(64, 400)
    protected = rng.randrange(0, window // 3)
    n_past = rng.randrange(protected + 16, window + 1)
    incoming = rng.randrange(1, window - protected + 1)
    recent = rng.randrange(0, 80)
    block = rng.randrange(1, window // 2)
    scores = np.array([rng.random() for _ in range(n_past)])
    ev = plan_scored(
        _layout(n_past, protected), incoming, scores, window=window, block=block, recent=recent
    )
    need = n_past + incoming - window
    if need <= 0:
        assert ev is None
        return
    assert ev is not None
    removed = [p for a, b in ev.runs for p in range(a, b)]
    assert len(removed) == len(set(removed)) == ev.n_tokens
    assert ev.n_tokens >= need
    assert all(p >= protected for p in removed)
    end = max(protected + need, n_past - recent)
    assert all(p < end for p in removed)  # recent cells only when the room is not elsewhere
    assert list(ev.runs) == sorted(ev.runs)
    assert all(b > a for a, b in ev.runs)
    assert all(ev.runs[i][1] < ev.runs[i + 1][0] for i in range(len(ev.runs) - 1))  # maximal
    # the lowest scores went: every removed cell scores <= every kept evictable cell
    kept = [p for p in range(protected, end) if p not in set(removed)]
    if kept and removed:
        assert max(scores[removed]) <= min(scores[kept])
    # positions stay contiguous after the ops, with exactly the kept tokens in order
    cells = list(range(1000, 1000 + n_past))
    survivors = [c for p, c in enumerate(cells) if p not in set(removed)]
    for can_shift in (True, False):
        assert apply_ops(cells, run_ops(ev, can_shift=can_shift)) == survivors


def test_plan_scored_prefers_the_older_cell_on_ties_and_refuses_what_cannot_fit() -> None:
    ev = plan_scored(_layout(20, 4), 4, np.zeros(20), window=20, block=3, recent=4)
    assert ev is not None and ev.runs == ((4, 8),)
    with pytest.raises(BadInput):
        plan_scored(_layout(20, 4), 17, np.zeros(20), window=20, block=3, recent=0)
    with pytest.raises(BadInput):
        plan_scored(_layout(20, 4), 4, np.zeros(5), window=20, block=3, recent=0)


def test_mirror_compact_is_remove_and_shift_of_each_run() -> None:
    rng = random.Random(3)
    for _ in range(30):
        n = rng.randrange(10, 80)
        chosen = sorted(rng.sample(range(n), rng.randrange(1, n)))
        runs, start = [], chosen[0]
        for a, b in zip(chosen, [*chosen[1:], None], strict=True):
            if b != a + 1:
                runs.append((start, a + 1))
                start = b
        one, other = PositionMirror(), PositionMirror()
        one.extend(range(n))
        other.extend(range(n))
        one.compact(runs)
        for a, b in reversed(runs):
            other.remove(a, b)
            other.shift(b, -1, -(b - a))
        assert one.tokens == other.tokens
        assert one.cells_used == one.n_past == n - len(chosen)


def _fed(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(32, 127) for _ in range(n)]


@pytest.mark.parametrize("can_shift", [True, False])
def test_every_evicted_token_leaves_in_exactly_one_segment(can_shift: bool) -> None:
    engine = FakeEngine(can_shift=can_shift)
    policy = SinkWindow(engine, window=96, n_sink=4, scorer=KeyNormScorer(0), recent=12)
    fed = _fed(700)
    for i in range(0, len(fed), 10):
        policy.decode(fed[i : i + 10])
        assert engine.cells_used == engine.n_past <= 96  # contiguous, bounded
    segments = policy.queue.drain()
    assert any(s.scattered for s in segments)
    stream_of: dict[int, int] = {}
    for s in segments:
        at = 0
        for run in s.runs:
            assert list(run.tokens) == fed[run.stream_start : run.stream_end]
            assert run.text == engine.detokenize(list(run.tokens))
            assert s.tokens[at : at + len(run.tokens)] == run.tokens
            at += len(run.tokens)
            for i in range(run.stream_start, run.stream_end):
                assert i not in stream_of
                stream_of[i] = s.seq
        assert at == s.n_tokens
    cached = policy._stream
    assert sorted(list(stream_of) + cached) == list(range(len(fed)))
    assert engine.tokens == [fed[i] for i in cached]
    assert engine.tokens[:4] == fed[:4]  # sinks
    assert engine.tokens[-12:] == fed[-12:]  # the recent tokens
    stats = policy.stats()
    assert stats.policy == "keynorm" and stats.gaps > 0
    assert stats.evicted_tokens == len(stream_of)


def test_keynorm_keeps_the_small_keys() -> None:
    engine = FakeEngine()  # the fake's key norm grows with the byte value
    policy = SinkWindow(engine, window=64, n_sink=4, scorer=KeyNormScorer(0), recent=8)
    policy.decode(list(b"aaaaZZZZbbbbYYYYccccXXXX" * 10))
    kept = bytes(engine.tokens[4:-8])
    fed = b"aaaaZZZZbbbbYYYYccccXXXX" * 10
    # The smallest bytes of the evictable region survive: a block boundary or the decode step
    # may keep a few others, but X and Y dominate and the kept bytes are smaller on average.
    assert sum(kept.count(c) for c in b"XY") >= 0.75 * len(kept)
    assert sum(kept) / len(kept) < sum(fed) / len(fed)


def test_a_scorer_that_fails_falls_back_to_the_window_once_said() -> None:
    class Broken:
        name = "broken"

        def scores(self, engine, n_past, cells=None):
            raise EngineFailed("no keys here")

    engine = FakeEngine()
    policy = SinkWindow(engine, window=64, n_sink=4, scorer=Broken(), recent=8)
    policy.decode(_fed(300))
    assert engine.cells_used <= 64
    assert "fell back" in policy.stats().policy
    assert all(not s.runs for s in policy.queue.drain())


def test_make_scorer_names_and_refusals() -> None:
    engine = FakeEngine()
    assert make_scorer("window", engine) is None
    assert make_scorer("keynorm", engine).name == "keynorm"
    with pytest.raises(BadInput, match="capture queries"):
        make_scorer("snapkv", engine)
    with pytest.raises(BadInput, match="unknown eviction policy"):
        make_scorer("h2x", engine)
    settings = EngineSettings(model_path=engine.settings.model_path, capture_queries=True)
    assert isinstance(make_scorer("snapkv", FakeEngine(settings)), SnapKvScorer)


def test_h2o_sums_follow_each_cell_across_evictions_and_shifts() -> None:
    settings = EngineSettings(model_path=FakeEngine().settings.model_path, capture_queries=True)
    engine = FakeEngine(settings)
    assert make_scorer("h2o", engine, 64).name == "h2o"
    scorer = HeavyHitterScorer(engine, pool=1)
    votes = iter([np.array([1.0, 0.0, 2.0, 0.0]), np.array([0.0, 1.0, 1.0])])
    scorer.votes = lambda engine, n_past: next(votes)  # type: ignore[method-assign]
    assert scorer.scores(engine, 4, [10, 11, 12, 13]).tolist() == [1, 0, 2, 0]
    # Cell 11 and 13 were evicted, 12 shifted down to position 1, cell 14 is new.
    assert scorer.scores(engine, 3, [10, 12, 14]).tolist() == [1, 3, 1]
    scorer.votes = lambda engine, n_past: None  # type: ignore[method-assign]
    assert scorer.scores(engine, 2, [12, 14]).tolist() == [3, 1]  # the sums alone decide
    assert scorer.scores(engine, 1, [15]) is None  # nothing known about a new cell
    assert scorer.scores(engine, 2, None) is None  # without cell ids: one vote, as snapkv


def test_ledger_follows_scattered_evictions_and_rewinds_them() -> None:
    ledger = ContextLedger(pinned_len=3)
    ledger.add([10, 11, 12, 13, 14], 1)  # streams 3..7
    mark = ledger.mark()
    ledger.add([20, 21, 22], 2)  # streams 8..10
    ledger.forget_runs([(4, 6), (9, 10), (12, 14)])  # the last span is not recorded yet
    assert ledger.tokens == [10, 13, 14, 20, 22]
    assert ledger.owners_between(7, 9) == [1, 2]
    assert ledger.owners_between(4, 6) is None
    ledger.add([30, 31, 32, 33], 3)  # streams 11..14: 12 and 13 were evicted while decoded
    assert ledger.tokens == [10, 13, 14, 20, 22, 30, 33]
    assert ledger.streams == [3, 6, 7, 8, 10, 11, 14]
    ledger.rewind(mark)
    assert ledger.tokens == [10, 11, 12, 13, 14] and ledger.streams == [3, 4, 5, 6, 7]


@pytest.mark.parametrize("evict", ["keynorm", "window"])
def test_a_session_keeps_its_record_of_the_cache_through_scattered_evictions(evict: str) -> None:
    engine = FakeEngine(EngineSettings(model_path=FakeEngine().settings.model_path, n_ctx=512))
    session = Session(engine, "sys", window=384, evict=evict, recent=16)
    for i in range(14):
        session.ask(f"message {i}: " + "lorem ipsum dolor sit amet " * 3)
    assert session.eviction_count > 0
    ledger = session.context.ledger
    held = engine.tokens[ledger.pinned_len :]
    assert ledger.tokens[-len(held) :] == held  # the cached tail is the record's suffix
    session.policy._sync()  # the reply's last tokens were decoded past the policy
    assert ledger.streams[-len(held) :] == session.policy._stream[ledger.pinned_len :]
    runs = ledger.tail(engine.tokens)
    assert all(owner != 0 for owner, _, _ in runs)  # every cached token has its message
    session._rebuild()  # replaying the tail keeps every cached token
    assert engine.tokens[ledger.pinned_len :] == held


def _state_bytes(positions: list[int], rows: list[np.ndarray]) -> bytes:
    out = struct.pack("<QII", STATE_MAGIC, 1, len(positions))
    for p in positions:
        out += struct.pack("<iIi", p, 1, 0)
    out += struct.pack("<II", 0, len(rows))
    for layer in rows:
        half = layer.astype(np.float16)
        out += struct.pack("<iQ", 1, half.shape[1] * 2) + half.tobytes()
    return out + b"V rows follow"


def test_parse_keys_reads_positions_and_rows_in_cache_order() -> None:
    rows = [np.arange(12, dtype=np.float32).reshape(3, 4), np.ones((3, 4), dtype=np.float32)]
    keys = parse_keys(_state_bytes([0, 2, 1], rows))
    assert keys.positions.tolist() == [0, 2, 1]
    assert np.allclose(keys.keys[0], rows[0])
    ordered = keys.in_position_order(3)
    assert ordered[0][1].tolist() == rows[0][2].tolist()
    with pytest.raises(EngineFailed, match="every position"):
        keys.in_position_order(4)
    with pytest.raises(EngineFailed, match="layout"):
        parse_keys(b"\0" * 32)
    with pytest.raises(EngineFailed, match="too short"):
        parse_keys(b"\0")
    with pytest.raises(EngineFailed, match="ends inside"):
        parse_keys(_state_bytes([0, 1, 2], rows)[:60])


def test_attention_received_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    n_q, n_head, n_kv, d, n_keys = 5, 4, 2, 8, 30
    q = rng.normal(size=(n_q, n_head, d)).astype(np.float32)
    k = rng.normal(size=(n_keys, n_kv * d)).astype(np.float32)
    qpos = np.arange(n_keys - n_q, n_keys)
    got = attention_received(q, qpos, k)
    expect = np.zeros(n_keys)
    group = n_head // n_kv
    for h in range(n_head):
        kh = k.reshape(n_keys, n_kv, d)[:, h // group]
        for i in range(n_q):
            logits = kh[: qpos[i] + 1] @ q[i, h] / np.sqrt(d)
            w = np.exp(logits - logits.max())
            expect[: qpos[i] + 1] += w / w.sum() / n_kv  # summed over a group, mean of groups
    assert got is not None and np.allclose(got, expect, atol=1e-5)
    assert abs(got.sum() - n_q * group) < 1e-3  # each query's weights sum to 1
    assert attention_received(q, qpos, k[:, :7]) is None


def test_max_pool_keeps_a_peaks_neighbours() -> None:
    x = np.array([0.0, 0, 0, 5, 0, 0, 0, 0, 1])
    assert max_pool(x, 3).tolist() == [0, 0, 5, 5, 5, 0, 0, 1, 1]
    assert max_pool(x, 1) is x


def test_without_a_compiler_the_query_capture_runs_in_python(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LOCALCTX_HOME", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a compiler that always fails
    monkeypatch.setattr(queries, "_BUILT", {})
    with caplog.at_level(logging.WARNING, logger="localctx.engine"):
        assert queries._built() is None
    assert "query capture runs in Python" in caplog.text
    assert not list((tmp_path / "cache" / "native").glob("*"))  # nothing half-built left


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler on this machine")
def test_the_c_callback_builds_once_into_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOCALCTX_HOME", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(queries, "_BUILT", {})
    built = queries._built()
    assert built is not None and built.is_file() and built.parent.name == "native"
    monkeypatch.setattr(queries, "_BUILT", {})
    mtime = built.stat().st_mtime_ns
    assert queries._built() == built and built.stat().st_mtime_ns == mtime  # not rebuilt
