"""Scored eviction (keynorm, snapkv, h2o) on the real llama.cpp engine (SmolLM2-135M).

What "matches a reference" means here is what it means for the window
(tests/test_kv_policy_real.py): the same history decoded fresh, the same scattered runs
removed *without* shifting (positions keep their gaps), then the same continuation. The gap
closing is then the only difference (re-roped K, the survivors nearer the sinks), so the
per-step distributions must agree within the window's bound (KL < 0.1, max |dp| < 0.2).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from localctx.cli import main
from localctx.engine import EngineSettings, load_engine
from localctx.engine.base import Engine
from localctx.errors import Exit
from localctx.kv.attention import SnapKvScorer
from localctx.kv.policy import SinkWindow
from localctx.kv.scoring import KeyNormScorer, make_scorer
from localctx.kv.segment import EvictedSegment
from tests.test_kv_policy_real import GREEDY, _assert_close, _prose, _steps

pytestmark = pytest.mark.real
DATA = Path(__file__).parent / "data"
PROSE = str(DATA / "devils-dictionary-excerpt.txt")


def _every_token_once(
    engine: Engine, policy: SinkWindow, fed: list[int], segments: list[EvictedSegment]
) -> None:
    """Each fed token is either cached or in exactly one segment's run, at its stream index."""
    owner: dict[int, int] = {}
    for s in segments:
        for a, b in s.stream_runs():
            for i in range(a, b):
                assert i not in owner, f"stream index {i} evicted twice"
                owner[i] = s.seq
        for run in s.runs or ():
            assert list(run.tokens) == fed[run.stream_start : run.stream_end]
            assert run.text == engine.detokenize(list(run.tokens))
        if not s.runs:
            assert list(s.tokens) == fed[s.stream_start : s.stream_end]
    kept = [i for i in range(len(fed)) if i not in owner]
    assert [fed[i] for i in kept] == engine.tokens  # the cache holds the rest, in order
    assert len(kept) == policy.stats().cells_used


@pytest.mark.parametrize("kv", ["f16", "q8_0"])
def test_scattered_eviction_matches_the_unshifted_reference(smollm_path: Path, kv: str) -> None:
    settings = EngineSettings(model_path=smollm_path, n_ctx=512, n_threads=1, type_k=kv, type_v=kv)
    with load_engine(settings) as engine:
        policy = SinkWindow(
            engine, window=256, n_sink=4, block=100, scorer=KeyNormScorer(), recent=32
        )
        fed = _prose(engine, 266)
        history, message = fed[:-16], fed[-16:]
        policy.decode(history)
        policy.make_room(len(message) + GREEDY.max_tokens)
        (segment,) = policy.queue.drain()
        assert segment.scattered and policy.stats().gaps >= 2
        assert segment.positions[0] >= 4  # never a sink
        assert segment.positions[1] <= len(history) - 32  # never the newest 32
        runs = [r.positions for r in segment.runs]
        shifted, tokens = _steps(engine, message, None)
        assert engine.cells_used <= policy.window
        _every_token_once(engine, policy, fed[: len(history)] + message + tokens, [segment])
        engine.kv_clear()
        engine.decode(history)
        for p0, p1 in runs:  # the same cells gone, positions not shifted
            assert engine.kv_remove(p0, p1)
        reference, _ = _steps(engine, message, tokens)
        _assert_close(shifted, reference, tokens)


def test_cached_keys_cover_every_position_and_quantized_norms_agree(smollm_path: Path) -> None:
    norms = {}
    for kv in ("f16", "q8_0"):
        settings = EngineSettings(
            model_path=smollm_path, n_ctx=256, n_threads=1, type_k=kv, type_v=kv
        )
        with load_engine(settings) as engine:
            engine.decode(_prose(engine, 120))
            engine.kv_remove_runs([(10, 20), (50, 60)])
            assert engine.n_past == 100
            cached = engine.kv_keys()
            assert sorted(cached.positions.tolist()) == list(range(100))
            layers = cached.in_position_order(100)
            assert len(layers) == 30 and layers[0].shape == (100, 3 * 64)
            norms[kv] = np.linalg.norm(layers[10].astype(np.float32), axis=1)
    assert np.corrcoef(norms["f16"], norms["q8_0"])[0, 1] > 0.99


def test_snapkv_captures_queries_and_scores_every_cell(smollm_path: Path) -> None:
    settings = EngineSettings(model_path=smollm_path, n_ctx=256, n_threads=1, capture_queries=True)
    with load_engine(settings) as engine:
        engine.decode(_prose(engine, 150))
        recent = engine.recent_queries()
        assert recent is not None and len(recent.layers) == 30
        assert recent.positions.tolist() == list(range(118, 150))  # the newest 32
        assert recent.layers[0].shape == (32, 9, 64)  # 9 query heads over 3 KV heads
        scores = SnapKvScorer(engine).scores(engine, engine.n_past)
        assert scores is not None and scores.shape == (150,)
        assert np.all(np.isfinite(scores)) and scores.min() >= 0
        assert scores[:4].mean() > np.median(scores)  # the sinks draw attention, as known
        engine.kv_clear()
        engine.watch_queries_from(200)  # only batches that reach position 200 are read
        fed = _prose(engine, 300)
        engine.decode(fed[:150])
        assert engine.recent_queries() is None
        engine.decode(fed[150:250])
        assert engine.recent_queries().positions.tolist() == list(range(218, 250))
        engine.kv_clear()
        engine.decode(fed[:150])
        for token in fed[150:232]:  # one at a time: only the last 32 before 200 + 32 vote
            engine.decode([token])
        assert engine.recent_queries() is None
        for token in fed[232:240]:
            engine.decode([token])
        assert engine.recent_queries().positions.tolist() == list(range(232, 240))
        engine.kv_clear()
        scorer = SnapKvScorer(engine, window=128)  # watches from 128 - 64
        policy = SinkWindow(engine, window=128, n_sink=4, scorer=scorer, recent=16)
        policy.decode(fed[:230])
        stats = policy.stats()
        assert engine.cells_used <= 128 and stats.policy == "snapkv"
        assert stats.evictions >= 3 and stats.gaps >= 1
        engine.kv_clear()
        policy = SinkWindow(
            engine, window=128, n_sink=4, scorer=make_scorer("h2o", engine, 128), recent=16
        )
        policy.decode(fed[:230])
        stats = policy.stats()
        assert engine.cells_used <= 128 and stats.policy == "h2o"
        assert stats.evictions >= 3 and stats.gaps >= 1
        _every_token_once(engine, policy, fed[:230], policy.queue.drain())


def test_the_fallback_reprefills_what_a_scored_policy_keeps(smollm_path: Path) -> None:
    settings = EngineSettings(model_path=smollm_path, n_ctx=192, n_threads=1)
    with load_engine(settings) as engine:
        policy = SinkWindow(
            engine, window=128, n_sink=4, force_fallback=True, scorer=KeyNormScorer(), recent=16
        )
        fed = _prose(engine, 300)
        policy.decode(fed)
        stats = policy.stats()
        assert stats.mode == "reprefill" and stats.evictions >= 2 and stats.peak_cells <= 128
        _every_token_once(engine, policy, fed, policy.queue.drain())


def _bench(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["bench", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("evict", ["keynorm", "snapkv"])
def test_bench_ppl_runs_a_scored_policy(smollm_path: Path, evict: str) -> None:
    code, out, err = _bench(
        "ppl", "-m", str(smollm_path), "--text", PROSE, "--tokens", "200",
        "--window", "96", "--chunk", "16", "--threads", "1", "--evict", evict, "--recent", "16",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["evict"] == evict and data["evictions"] >= 2 and data["peak_cells"] <= 96
    assert data["gaps"] >= 1 and data["score_seconds"] > 0
    assert 1 < data["ppl"] < 1000


def test_a_scored_policy_on_a_remote_engine_is_one_clear_error(smollm_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["ask", "hello", "--remote", "http://127.0.0.1:9", "--evict", "snapkv"]
    )
    assert result.exit_code == Exit.BAD_INPUT
    assert result.stdout == ""
    assert "--evict" in result.stderr and result.stderr.count("\n") == 1


def test_the_c_callback_captures_what_the_python_one_does(
    smollm_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = EngineSettings(model_path=smollm_path, n_ctx=256, n_threads=1, capture_queries=True)
    got = {}
    for mode in ("c", "python"):
        if mode == "python":
            monkeypatch.setenv("LOCALCTX_QUERY_CAPTURE", "python")
        with load_engine(settings) as engine:
            assert (engine.queries.native is None) == (mode == "python")  # type: ignore[attr-defined]
            fed = _prose(engine, 120)
            engine.decode(fed[:100])
            for token in fed[100:110]:  # one-token batches join the window too
                engine.decode([token])
            got[mode] = engine.recent_queries()
    c, py = got["c"], got["python"]
    assert c is not None and py is not None
    assert c.positions.tolist() == py.positions.tolist() == list(range(78, 110))
    assert sorted(c.layers) == sorted(py.layers) == list(range(30))
    for layer in c.layers:
        assert np.array_equal(c.layers[layer], py.layers[layer])
