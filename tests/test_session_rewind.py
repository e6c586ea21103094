"""Session.rewind / set_system_prompt / Sampling.stop: what `localctx serve` edits a session with.

A rewind must leave the session as if the dropped messages had never been sent: the store,
the recall index and the cache. The fake engine checks the bookkeeping exactly (its tokens are
bytes); the real model checks what matters — after a rewind the model answers exactly as a
session that never saw the dropped turn (greedy).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from localctx.engine import Sampling
from localctx.engine.fake import FakeEngine
from localctx.memory.recall import RecallStore
from localctx.memory.snapshots import SnapshotStore
from localctx.session import Session

SHORT = Sampling(max_tokens=12, temperature=0.0)
FAKE = Sampling(max_tokens=64)  # the fake echoes the question back whole


def stored_session(engine: object, home: Path, name: str = "s", **options: object) -> Session:
    return Session(
        engine,  # type: ignore[arg-type]
        store=RecallStore(home / "recall.sqlite3"),
        snapshots=SnapshotStore(home / "snaps"),
        name=name,
        summarize_per_turn=0,
        **options,  # type: ignore[arg-type]
    )


def test_rewind_in_the_window_cuts_the_cache_back_to_the_turn_before(tmp_path: Path) -> None:
    engine = FakeEngine()
    s = stored_session(engine, tmp_path)
    s.ask("first question", FAKE)
    after_first = list(engine.tokens)
    s.ask("second question", FAKE)
    assert s.rewind(2) == "trimmed"
    assert engine.tokens == after_first
    assert [m["content"] for m in s.messages] == ["first question", "echo: first question"]
    store = s.store
    assert store is not None
    assert [r[2] for r in store.messages(s.session_id)] == [
        "first question",
        "echo: first question",
    ]
    assert store.search("second") == []  # gone from the recall index too
    s.ask("third question", FAKE)  # the next turn continues from the cut
    assert s.messages[-1]["content"] == "echo: third question"


def test_rewind_to_nothing_leaves_only_the_pinned_region(tmp_path: Path) -> None:
    engine = FakeEngine()
    s = stored_session(engine, tmp_path)
    s.ask("hello", FAKE)
    pinned = s.pinned_tokens()
    assert s.rewind(0) == "trimmed"
    assert engine.cells_used == pinned
    assert s.messages == []
    assert s.rewind(0) == ""  # nothing left to drop


def test_rewind_past_an_eviction_rebuilds_and_drops_the_segments(tmp_path: Path) -> None:
    engine = FakeEngine()
    s = stored_session(engine, tmp_path, window=256)
    s.ask("keep this one", FAKE)
    for i in range(4):
        s.feed("user", f"filler {i} " + "x" * 90)
    store = s.store
    assert store is not None
    assert any("filler" in seg.text for seg in store.pending_segments(session_id=s.session_id))
    assert s.rewind(2) == "rebuilt"
    rows = store.messages(s.session_id)
    assert [r[2] for r in rows] == ["keep this one", "echo: keep this one"]
    assert all("filler" not in seg.text for seg in store.pending_segments(session_id=s.session_id))
    assert "filler" not in engine.detokenize(engine.tokens)
    assert "keep this one" in engine.detokenize(engine.tokens)


def test_rewind_before_the_context_starts_only_edits_the_store(tmp_path: Path) -> None:
    engine = FakeEngine()
    s = stored_session(engine, tmp_path)
    s.ask("one", FAKE)
    s.ask("two", FAKE)
    s.close()
    reopened = stored_session(FakeEngine(), tmp_path)
    assert reopened.rewind(2) == "dropped"
    reopened.prepare_turn(summarize=False)
    assert [m["content"] for m in reopened.messages] == ["one", "echo: one"]


def test_stop_sequences_cut_the_stored_reply(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.enqueue("alpha beta STOP gamma")
    s = stored_session(engine, tmp_path)
    s.ask("q", Sampling(max_tokens=64, stop=("STOP",)))
    assert s.messages[-1]["content"] == "alpha beta"
    assert "gamma" not in engine.detokenize(engine.tokens)


def test_a_new_system_prompt_rebuilds_the_pinned_region(tmp_path: Path) -> None:
    engine = FakeEngine()
    s = stored_session(engine, tmp_path)
    s.ask("hi", FAKE)
    assert not s.set_system_prompt(s.system_prompt)
    assert s.set_system_prompt("You are a pirate.")
    text = engine.detokenize(engine.tokens)
    assert text.startswith("<system>You are a pirate.")
    assert "<user>hi" in text


@pytest.mark.real
def test_after_a_rewind_the_model_answers_as_if_the_turn_never_happened(
    smollm: object, tmp_path: Path
) -> None:
    edited = stored_session(smollm, tmp_path, "edited")
    edited.ask("My favourite colour is green.", SHORT)
    edited.ask("Tell me a joke about cats.", SHORT)  # the turn that gets dropped
    assert edited.rewind(2) == "trimmed"
    answer_after_rewind = edited.ask("What is my favourite colour?", SHORT).answer
    edited.close()

    smollm.kv_clear()  # type: ignore[attr-defined]
    clean = stored_session(smollm, tmp_path, "clean")
    clean.ask("My favourite colour is green.", SHORT)
    assert clean.ask("What is my favourite colour?", SHORT).answer == answer_after_rewind
    assert answer_after_rewind  # the model said something, and the same thing
    clean.close()
