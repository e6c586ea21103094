"""Stopping long work, and taking a message back, on the fake engine with the real sink window.

A cancel is set from inside the progress report (the decoding thread), so where it lands is
exact. The real-model counterparts are in test_session_cancel_real.py.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from localctx.engine.base import EngineSettings, Sampling
from localctx.engine.fake import FakeEngine
from localctx.errors import BadInput, Cancelled
from localctx.memory.recall import RecallStore
from localctx.memory.snapshots import SnapshotStore
from localctx.progress import Progress, describe
from localctx.session import Session

FILLER = "The quick brown fox jumps over the lazy dog near the river bank. "


def fake(n_ctx: int = 4096, n_batch: int = 64) -> FakeEngine:
    return FakeEngine(EngineSettings(model_path=Path("fake.gguf"), n_ctx=n_ctx, n_batch=n_batch))


def stored(tmp_path: Path, engine: FakeEngine, window: int = 600, name: str = "t") -> Session:
    return Session(
        engine,
        "You are a test.",
        store=RecallStore(tmp_path / "recall.sqlite3"),
        snapshots=SnapshotStore(tmp_path / "snaps"),
        name=name,
        window=window,
        summarize_per_turn=0,
    )


def state(session: Session) -> dict[str, Any]:
    """Everything a stopped message must leave as it was."""
    stats = session.policy.stats()
    ledger = session.context.ledger
    store = session.store
    assert store is not None
    return {
        "tokens": session.engine.tokens,
        "n_past": session.engine.n_past,
        "ledger": (list(ledger.tokens), list(ledger.owners), ledger.last, ledger.last_open),
        "window": (stats.cells_used, stats.evictions, stats.tokens_seen, stats.evicted_tokens),
        "messages": list(session.messages),
        "stored": store.messages(session.session_id),
        "segments": store.counts()["segments"],
        "queued": len(session.policy.queue),
    }


class StopAfter:
    """A progress callback that sets the cancel event once `n` units are done."""

    def __init__(self, n: int, stage: str = "reading the prompt") -> None:
        self.n, self.stage = n, stage
        self.cancel = threading.Event()
        self.reports: list[Progress] = []

    def __call__(self, progress: Progress) -> None:
        self.reports.append(progress)
        if progress.stage == self.stage and progress.done >= self.n:
            self.cancel.set()


def test_a_stopped_prefill_takes_the_message_back_exactly(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine, window=2048)
    session.ask("first question", Sampling(max_tokens=30))
    before = state(session)
    stop = StopAfter(128)
    with session.supervised(stop.cancel, stop), pytest.raises(Cancelled):
        session.ask(FILLER * 12, Sampling(max_tokens=30))  # ~780 tokens, no eviction
    assert state(session) == before
    assert [r.done for r in stop.reports if r.stage == "reading the prompt"][-1] == 128
    again = session.ask("second question", Sampling(max_tokens=40))  # the next turn works
    assert again.answer == "echo: second question"
    assert [m["content"] for m in session.messages][-2:] == ["second question", again.answer]


def test_a_stopped_prefill_that_had_evicted_puts_the_evicted_cells_back(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine, window=600)
    for i in range(3):
        session.ask(f"question {i} " + FILLER, Sampling(max_tokens=20))
    before = state(session)
    stop = StopAfter(1200)  # two windows into a ~5,000-token message
    with session.supervised(stop.cancel, stop), pytest.raises(Cancelled):
        session.ask(FILLER * 80, Sampling(max_tokens=20))
    assert max(r.done for r in stop.reports) >= 1200  # it did evict before it was stopped
    assert state(session) == before
    assert session.ask("after", Sampling(max_tokens=40)).answer == "echo: after"


def test_the_rollback_state_goes_to_disk_above_the_memory_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import localctx.context.rollback as turns

    monkeypatch.setattr(turns, "ROLLBACK_IN_MEMORY_BYTES", 1)
    monkeypatch.setattr(turns.tempfile, "tempdir", str(tmp_path))
    engine = fake()
    session = stored(tmp_path, engine, window=600)
    session.ask("question " + FILLER * 4, Sampling(max_tokens=20))
    before = state(session)
    stop = StopAfter(700)
    with session.supervised(stop.cancel, stop), pytest.raises(Cancelled):
        session.ask(FILLER * 40, Sampling(max_tokens=20))
    assert state(session) == before
    assert not list(tmp_path.glob("rollback-*.kv"))  # the file is gone with the rollback


def test_a_cancel_during_the_reply_keeps_the_partial_reply(tmp_path: Path) -> None:
    engine = fake()
    engine.enqueue("x" * 500)
    session = stored(tmp_path, engine, window=2048)
    cancel = threading.Event()
    pieces = []
    for event in session.stream("go", Sampling(max_tokens=600), cancel=cancel):
        pieces.append(event.text)
        if len(pieces) == 40:
            cancel.set()
    assert engine.stats.stop_reason == "cancelled"
    assert session.messages[-1] == {"role": "assistant", "content": "x" * 40}


def test_prefill_progress_counts_every_token_once(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine, window=2048)
    session.ask("warm up", Sampling(max_tokens=10))
    reports: list[Progress] = []
    before = engine.n_past
    with session.supervised(progress=reports.append):
        session.ask(FILLER * 10, Sampling(max_tokens=10))
    prompt = [r for r in reports if r.stage == "reading the prompt"]
    done = [r.done for r in prompt]
    assert done == sorted(done) and done[0] == 0
    assert prompt[-1].done == prompt[-1].total == engine.stats.prefill_tokens
    assert prompt[-1].total + 10 + before >= engine.n_past  # the prompt, then the reply
    assert "ETA" in describe(Progress("reading the prompt", 100, 400, seconds=2.0))
    assert describe(Progress("reading the prompt", 100, 400, seconds=2.0)).startswith(
        "reading the prompt 100/400 tokens"
    )


def test_summaries_stop_between_segments_and_the_rest_stay_pending(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine, window=600)
    for i in range(6):
        session.feed("user", f"fact {i}: " + FILLER * 3)
    assert session.store is not None
    pending = len(session.store.pending_segments(session_id=session.session_id))
    assert pending >= 3
    engine.enqueue("x" * 20)  # the first segment's summary (then the fake echoes)
    decode_figures = (engine.stats.decode_tokens, engine.stats.decode_seconds)
    cells = engine.tokens
    stop = StopAfter(1, stage="summarizing")
    with session.supervised(stop.cancel, stop), pytest.raises(Cancelled):
        session.summarize_pending()
    left = len(session.store.pending_segments(session_id=session.session_id))
    assert left == pending - 1
    assert engine.tokens == cells  # the conversation is back in the cache
    assert (engine.stats.decode_tokens, engine.stats.decode_seconds) == decode_figures
    assert [r.unit for r in stop.reports] == ["segments"] * len(stop.reports)


def test_a_stopped_forget_rebuild_is_built_again_at_the_next_turn(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine, window=2048)
    session.ask("the depot code is 4471", Sampling(max_tokens=40))
    session.ask("unrelated " + FILLER * 8, Sampling(max_tokens=40))
    stop = StopAfter(64, stage="rebuilding context")
    with session.supervised(stop.cancel, stop):
        gone = session.forget("depot")
    assert gone.ids and engine.n_past == 0  # no half context is kept
    assert any("next message builds it" in n for n in session.notices)
    answer = session.ask("and now?", Sampling(max_tokens=40)).answer
    assert answer == "echo: and now?"
    held = engine.detokenize(engine.tokens)
    assert "You are a test." in held and "4471" not in held


def test_retract_last_turn_leaves_the_cache_as_after_the_turn_before(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine, window=2048)
    session.ask("first", Sampling(max_tokens=40))
    after_first = state(session)
    session.ask("second", Sampling(max_tokens=40))
    assert session.retract_last_turn() == "second"
    now = state(session)
    for key in ("tokens", "n_past", "messages", "stored"):
        assert now[key] == after_first[key], key
    assert session.retract_last_turn() == "first"
    assert session.messages == [] and engine.detokenize(engine.tokens).startswith("<system>")
    assert session.retract_last_turn() is None
    assert session.ask("third", Sampling(max_tokens=40)).answer == "echo: third"


def test_retract_works_on_a_resumed_session(tmp_path: Path) -> None:
    engine = fake()
    first = stored(tmp_path, engine, window=2048, name="resume")
    first.ask("one", Sampling(max_tokens=40))
    first.ask("two", Sampling(max_tokens=40))
    first.close()
    engine2 = fake()
    again = stored(tmp_path, engine2, window=2048, name="resume")
    again.prepare_turn()
    assert again.retract_last_turn() == "two"
    assert [m["content"] for m in again.messages] == ["one", "echo: one"]
    assert engine2.detokenize(engine2.tokens).endswith("<assistant>echo: one")
    assert again.ask("three", Sampling(max_tokens=40)).answer == "echo: three"


def test_core_memory_is_bounded_in_tokens(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine, window=1024)
    assert session.core_budget == 128
    session.remember("the depot code is 4471")
    assert session.core_tokens() == len("the depot code is 4471")
    with pytest.raises(BadInput, match="core memory holds 22 of its 128 tokens"):
        session.remember("x" * 200)
    assert len(session.core) == 1


def test_seen_and_evictions_count_across_rebuilds(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine, window=600)
    for i in range(4):
        session.ask(f"turn {i} " + FILLER * 3, Sampling(max_tokens=20))
    seen, evictions = session.stream_totals()
    assert evictions > 0
    session._rebuild()
    assert session.policy.stats().evictions == 0  # the new window starts at 0 ...
    assert session.stream_totals() == (seen, evictions)  # ... the session's count does not
    session.ask("more", Sampling(max_tokens=20))
    assert session.stream_totals()[0] > seen


def test_regenerate_answers_again_from_the_same_context_without_reading_it(
    tmp_path: Path,
) -> None:
    engine = fake()
    engine.enqueue("the first answer", "another answer")
    session = stored(tmp_path, engine, window=2048)
    session.ask("a long question " + FILLER * 6, Sampling(max_tokens=40))
    context = engine.tokens[: -len("the first answer")]
    reports: list[Progress] = []
    with session.supervised(progress=reports.append):
        text = "".join(e.text for e in session.regenerate(Sampling(max_tokens=40)))
    assert text == "another answer"
    assert not [r for r in reports if r.stage == "reading the prompt"]  # not read again
    assert engine.tokens == context + list(b"another answer")
    assert [m["content"] for m in session.messages][-1] == "another answer"
    assert session.store is not None
    rows = session.store.messages(session.session_id)
    assert [row[2] for row in rows] == [session.messages[0]["content"], "another answer"]
    engine.enqueue("a third")
    assert "".join(e.text for e in session.regenerate(Sampling(max_tokens=40))) == "a third"
    assert session.ask("next", Sampling(max_tokens=40)).answer == "echo: next"


def test_regenerate_after_the_reply_evicted_its_question_sends_it_again(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine, window=400)
    engine.enqueue("y" * 380)  # a reply that pushes its own question out of the window
    session.ask("the question", Sampling(max_tokens=400))
    engine.enqueue("short")
    assert "".join(e.text for e in session.regenerate(Sampling(max_tokens=40))) == "short"
    assert [m["content"] for m in session.messages] == ["the question", "short"]
