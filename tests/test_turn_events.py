"""A turn as typed events (Session.turn): the order, and that they agree with what the session
and its store hold afterwards. The fake engine drives the real sink window and stores here;
the real-model test is at the end."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from localctx.engine.base import Sampling
from localctx.memory.recall import RecallStore
from localctx.session import Session
from localctx.turns import (
    Recalled,
    SegmentEvicted,
    SummaryWritten,
    TokensGenerated,
    TurnFinished,
)
from tests.test_session import fake, stored

FACT = "Remember this: the access code for the blue depot is 4471."
FILLER = "The quick brown fox jumps over the lazy dog near the river bank. "


def test_a_turn_reads_recall_first_tokens_then_the_figures_last(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine)
    session.feed("user", FACT)
    for _ in range(8):
        session.feed("user", FILLER)
    engine.enqueue("It is 4471.")
    events = list(session.turn("What is the access code for the blue depot?"))
    assert isinstance(events[0], Recalled)
    assert any("4471" in item.text for item in events[0].items)
    assert isinstance(events[-1], TurnFinished)
    assert sum(isinstance(e, TurnFinished) for e in events) == 1
    pieces = "".join(e.text for e in events if isinstance(e, TokensGenerated))
    result = events[-1].result
    assert pieces.strip() == result.answer == session.messages[-1]["content"] == "It is 4471."
    assert list(events[0].items) == result.recalled == session.last_recall


def test_evictions_and_summaries_arrive_as_events_within_their_turn(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine, per_turn=2)
    engine.enqueue("ok")
    list(session.turn("first " + FILLER))
    before = session.eviction_count
    engine.enqueue("ok")
    events = list(session.turn("second " + FILLER * 12))  # ~800 tokens into a 600 window
    evicted = [e for e in events if isinstance(e, SegmentEvicted)]
    assert evicted and len(evicted) == session.eviction_count - before
    assert evicted[-1].report == session.last_eviction
    stored_ids = {s.id for s in session.store.pending_segments(session_id=session.session_id)}  # type: ignore[union-attr]
    assert {e.report.segment_id for e in evicted} <= stored_ids  # verbatim, not summarized yet
    # The next turn summarizes up to two of them before it reads the question.
    engine.enqueue("summary one", "summary two", "ok")
    events = list(session.turn("third"))
    written = [e for e in events if isinstance(e, SummaryWritten)]
    assert 1 <= len(written) <= 2
    assert written[-1].running == session.running_summary
    assert isinstance(events[-1], TurnFinished)


def test_a_regenerated_turn_has_events_too(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine)
    engine.enqueue("one answer")
    list(session.turn("a question"))
    engine.enqueue("another answer")
    events = list(session.turn(None))
    assert isinstance(events[-1], TurnFinished)
    assert events[-1].result.answer == "another answer" == session.messages[-1]["content"]
    assert [m["role"] for m in session.messages] == ["user", "assistant"]


def test_stream_is_the_token_view_of_the_same_turn(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine)
    engine.enqueue("same words")
    tokens = list(session.stream("q"))
    assert "".join(t.text for t in tokens).strip() == "same words"


@pytest.mark.real
def test_the_real_model_turn_events_agree_with_its_cache(smollm: object, tmp_path: Path) -> None:
    session = stored(tmp_path, smollm, window=256)
    session.feed("user", FACT)
    for _ in range(6):
        session.feed("user", FILLER * 3)
    events = list(
        session.turn("What is the access code for the blue depot?", Sampling(max_tokens=8))
    )
    assert isinstance(events[0], Recalled) and isinstance(events[-1], TurnFinished)
    assert any("4471" in item.text for item in events[0].items)
    engine = session.engine
    assert "4471" in engine.detokenize(engine.tokens)  # what the event said was inserted
    generated = [e.event.token for e in events if isinstance(e, TokensGenerated)]
    held = engine.tokens
    assert generated  # the reply's tokens end the cache (the very last may be undecoded)
    assert held[-len(generated) :] == generated or held[1 - len(generated) :] == generated[:-1]
    assert events[-1].result.completion_tokens == len(generated)
    assert engine.cells_used <= 256


def test_whoever_opens_a_store_closes_it(tmp_path: Path) -> None:
    engine = fake()
    opened = Session.open(engine, name="closing")  # LOCALCTX_HOME is a temporary directory
    store = opened.store
    assert store is not None
    engine.enqueue("ok")
    opened.ask("hello")
    opened.close()
    with pytest.raises(sqlite3.ProgrammingError):  # its connection is closed
        store.messages(opened.session_id)
    opened.close()  # idempotent
    mine = RecallStore(tmp_path / "mine.sqlite3")
    lent = Session(engine, store=mine, name="lent")
    lent.close()
    assert mine.messages(lent.session_id) == []  # a store passed in stays its caller's, open
    mine.close()
