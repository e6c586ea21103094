"""Session over the memory tiers, on the fake engine with the real sink window (fast, exact).

Real-model counterparts are in test_session_real.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from localctx.context import layout
from localctx.engine.base import Engine, EngineSettings, Sampling
from localctx.engine.fake import FakeEngine
from localctx.memory.recall import RecallStore
from localctx.memory.retrieval import Candidate, excerpt, select_within_budget
from localctx.memory.snapshots import SnapshotStore
from localctx.memory.summarizer import keep_newest
from localctx.session import Session

FACT = "Remember: the access code for the blue depot is 4471."
FILLER = "The quick brown fox jumps over the lazy dog near the river bank. " * 4


def fake(n_ctx: int = 4096) -> FakeEngine:
    return FakeEngine(EngineSettings(model_path=Path("fake.gguf"), n_ctx=n_ctx))


def stored(
    tmp_path: Path, engine: Engine, name: str = "t", window: int = 600, per_turn: int = 0
) -> Session:
    """A session over stores in `tmp_path`; `per_turn` segments are summarized per turn."""
    return Session(
        engine,
        "You are a test.",
        store=RecallStore(tmp_path / "recall.sqlite3"),
        snapshots=SnapshotStore(tmp_path / "snaps"),
        name=name,
        window=window,
        summarize_per_turn=per_turn,
    )


def text(engine: FakeEngine) -> str:
    return engine.detokenize(engine.tokens)


def test_storeless_session_reuses_the_cache_across_turns() -> None:
    engine = fake()
    session = Session(engine)
    first = session.ask("hello", Sampling(max_tokens=50))
    assert first.answer == "echo: hello"
    second = session.ask("again", Sampling(max_tokens=50))
    assert second.reused_tokens >= first.prompt_tokens  # nothing before was decoded again
    assert [m["role"] for m in session.messages] == ["user", "assistant"] * 2
    assert text(engine).endswith("<user>again\n<assistant>echo: again")


def test_evicted_fact_is_stored_and_recalled_into_context(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine)
    session.feed("user", FACT)
    for _ in range(8):
        session.feed("user", FILLER)
    assert "4471" not in text(engine)  # pushed out of the window
    assert engine.cells_used <= 600
    segments = [i for i in session.store.iter_all() if i["kind"] == "segment"]  # type: ignore[union-attr]
    assert any("4471" in str(s["text"]) for s in segments)
    first_msg = session.store.messages(session.session_id)[0][0]  # type: ignore[union-attr]
    assert any(first_msg in s["message_ids"] for s in segments)  # type: ignore[operator]

    engine.enqueue("It is 4471.")
    result = session.ask("What is the access code for the blue depot?", Sampling(max_tokens=40))
    assert any("4471" in item.text for item in result.recalled)
    assert result.recalled == session.last_recall
    assert "4471" in text(engine)  # back in the context, right before the question
    assert session.policy.regions["recalled"][1] > session.policy.regions["recalled"][0]


def test_recalled_snippets_are_not_stored_again_when_evicted(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine)
    session.feed("user", FACT)
    for _ in range(8):
        session.feed("user", FILLER)
    engine.enqueue("ok")
    session.ask("access code blue depot?", Sampling(max_tokens=10))
    before = sum(1 for i in session.store.iter_all() if "4471" in str(i.get("text")))  # type: ignore[union-attr]
    for _ in range(8):
        session.feed("user", FILLER)
    after = sum(1 for i in session.store.iter_all() if "4471" in str(i.get("text")))  # type: ignore[union-attr]
    assert after == before


def test_summaries_are_written_between_turns_and_the_cache_is_put_back(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine)
    for _ in range(8):
        session.feed("user", FILLER)
    pending = len(session.store.pending_segments())  # type: ignore[union-attr]
    assert pending > 0
    held = list(engine.tokens)
    engine.enqueue(*[f"summary {i}" for i in range(2 * pending)])
    assert session.summarize_pending() == pending
    assert engine.tokens == held  # the conversation's cache, exactly
    assert session.store.pending_segments() == []  # type: ignore[union-attr]
    assert "summary" in session.running_summary
    assert session.last_eviction is not None and session.last_eviction.summary


def test_remember_and_forget(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine)
    session.feed("user", "hello")
    cid = session.remember("My name is Ana.")
    assert "My name is Ana." in text(engine)
    assert session.core == [(cid, "My name is Ana.")]
    session.feed("user", FACT)
    assert "4471" in text(engine)
    gone = session.forget("blue depot 4471")
    assert gone.ids
    assert "4471" not in text(engine)  # dropped from the live context at once
    assert session.store.search("4471") == []  # type: ignore[union-attr]
    assert "My name is Ana." in text(engine)  # now in the pinned region
    session.forget(f"c{cid}")
    assert session.core == [] and "Ana" not in text(engine)


def test_resume_restores_messages_and_the_kv_snapshot(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine, name="work")
    engine.enqueue("first answer")
    session.ask("first question", Sampling(max_tokens=40))
    session.close()
    saved = list(engine.tokens)

    again = fake()
    resumed = stored(tmp_path, again, name="work")
    resumed.prepare_turn()
    assert again.tokens == saved  # restored from the snapshot, not recomputed
    assert [m["content"] for m in resumed.messages] == ["first question", "first answer"]
    again.enqueue("second answer")
    resumed.ask("second question", Sampling(max_tokens=40))
    assert text(again).count("first question") == 1
    assert text(again).endswith("<user>second question\n<assistant>second answer")


def test_resume_with_other_settings_recomputes_and_says_so(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine, name="work")
    engine.enqueue("first answer")
    session.ask("first question", Sampling(max_tokens=40))
    session.close()

    other = fake(n_ctx=2048)  # another context size: the snapshot must not be loaded
    resumed = stored(tmp_path, other, name="work")
    resumed.prepare_turn()
    assert any("other settings (n_ctx)" in n for n in resumed.notices)
    assert "first question" in text(other)  # recomputed from the stored messages
    assert [m["role"] for m in resumed.messages] == ["user", "assistant"]
    other.enqueue("second answer")
    resumed.ask("second question", Sampling(max_tokens=40))
    assert "<assistant>first answer\n<user>second question\n" in text(other)  # no seams


def test_forget_deletes_snapshots_that_hold_it(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine, name="work")
    session.feed("user", FACT)
    session.close()
    assert session.snapshots.stats()["snapshots"] == 1  # type: ignore[union-attr]
    session.forget("blue depot")
    assert session.snapshots.stats()["snapshots"] == 0  # type: ignore[union-attr]


# ------------------------------------------------------------------ pure pieces
CHATML = "<|im_start|>{role}\n{content}<|im_end|>\n"


def chatml(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    out = "".join(CHATML.format(**m) for m in messages)
    return out + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def plain(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join([*lines, "Assistant:"] if add_generation_prompt else lines)


@pytest.mark.parametrize("fmt", [chatml, plain], ids=["chatml", "plain"])
def test_increments_reproduce_the_full_rendering(fmt: object) -> None:
    """Appending increments gives the same text as rendering the whole conversation."""
    turns = [
        ({"role": "user", "content": "hi"}, " hello there"),
        ({"role": "user", "content": "and?"}, "more"),
    ]
    held = ""
    last = None
    for user, reply in turns:
        held += layout.continuation(fmt, last, [user], generation=True, last_open=True)  # type: ignore[arg-type]
        held += reply
        last = {"role": "assistant", "content": reply}
    whole = layout.render(  # type: ignore[arg-type]
        fmt,
        [turns[0][0], {"role": "assistant", "content": turns[0][1].strip()}, turns[1][0]],
        generation=True,
    )
    assert " ".join((held[: -len("more")]).split()) == " ".join(whole.split())


def test_excerpt_keeps_the_sentence_with_the_query_terms() -> None:
    body = " ".join(f"Sentence number {i} is filler." for i in range(50))
    body += " The access code for the blue depot is 4471. " + body
    cut = excerpt(body, ["blue", "depot", "code"], 120)
    assert "4471" in cut and len(cut) <= 120


def test_select_within_budget_never_exceeds_it() -> None:
    cands = [Candidate("recall", f"s{i}", "word " * (10 * i + 5), 1.0) for i in range(1, 8)]
    chosen = select_within_budget(cands, 100, lambda t: len(t.split()))
    assert sum(c.n_tokens for c in chosen) <= 100
    assert chosen and chosen[0].id == "s1"


def test_keep_newest_bounds_the_running_summary() -> None:
    text_ = "\n".join(f"line {i} with a few words" for i in range(100))
    kept = keep_newest(text_, 30, lambda t: len(t.split()))
    assert len(kept.split()) <= 30 and kept.endswith("line 99 with a few words")


@pytest.mark.parametrize("hostile", ['"', "AND OR NOT", "depot* : (", "NEAR(", "'--"])
def test_fts5_syntax_in_a_chat_message_never_raises(tmp_path: Path, hostile: str) -> None:
    engine = fake()
    session = stored(tmp_path, engine)
    session.feed("user", FACT)
    engine.enqueue("fine")
    assert session.ask(hostile, Sampling(max_tokens=10)).answer == "fine"


def test_gauge_reads_during_a_summary_see_the_conversation_not_the_scratch(
    tmp_path: Path,
) -> None:
    engine = fake()
    session = stored(tmp_path, engine)
    for _ in range(8):
        session.feed("user", FILLER)
    before = session.policy.stats()
    seen = []
    real_generate = engine.generate

    def generate_and_read(*args: object, **kwargs: object) -> object:
        seen.append(session.policy.stats())  # what a gauge thread would read mid-summary
        return real_generate(*args, **kwargs)  # type: ignore[arg-type]

    engine.generate = generate_and_read  # type: ignore[method-assign]
    engine.enqueue(*["short summary"] * 40)
    assert session.summarize_pending(max_segments=2) == 2
    assert seen and all(s.cells_used == before.cells_used for s in seen)
    after = session.policy.stats()
    assert (after.cells_used, after.tokens_seen) == (before.cells_used, before.tokens_seen)


def test_a_session_keeps_one_snapshot_the_newest(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine, name="work")
    session.feed("user", "one")
    session.close()
    session.feed("user", "two")
    session.close()
    assert session.snapshots.stats()["snapshots"] == 1  # type: ignore[union-attr]


def test_a_long_stable_pinned_prefix_is_restored_from_a_snapshot(tmp_path: Path) -> None:
    system = "You answer questions about this repository. " * 10  # > 256 fake tokens
    decoded: list[int] = []

    def run(engine: FakeEngine) -> None:
        real = engine.decode
        engine.decode = lambda toks, **kw: (decoded.append(len(toks)), real(toks, **kw))[1]  # type: ignore[method-assign]
        session = stored(tmp_path, engine, name="fresh" + str(len(decoded)))
        session.system_prompt = system
        session.feed("user", "hi")

    run(fake())
    first = sum(decoded)
    decoded.clear()
    run(fake())
    assert sum(decoded) < first - 400  # the ~440-token prefix came from the snapshot


class PlainFake(FakeEngine):
    @property
    def chat_template_source(self) -> str:
        return "none (plain transcript)"


def test_a_base_model_stops_where_it_starts_the_users_next_line() -> None:
    engine = PlainFake(EngineSettings(model_path=Path("fake.gguf"), n_ctx=4096))
    session = Session(engine)
    engine.enqueue("It is 4471.\nUser: and now tell me more")
    result = session.ask("code?", Sampling(max_tokens=100))
    assert result.answer == "It is 4471."
    assert text(engine).endswith("<assistant>It is 4471.")  # nothing after the cut is cached


def test_recall_leaves_out_passages_that_match_only_common_words(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine)
    session.feed("user", "Remember this: the access code for the violet garage is 5242.")
    for _ in range(4):  # the two facts leave the window in different segments
        session.feed("user", FILLER)
    session.feed("user", "Remember this: the access code for the silver tower is 7634.")
    for _ in range(8):
        session.feed("user", FILLER)
    engine.enqueue("ok")
    result = session.ask("What is the access code for the violet garage?", Sampling(max_tokens=5))
    recalled = " ".join(item.text for item in result.recalled)
    assert "5242" in recalled and "7634" not in recalled


def test_a_long_segment_is_cut_into_pieces_that_keep_every_word() -> None:
    from localctx.memory.summarizer import pieces

    text = " ".join(f"word{i}" for i in range(500))
    count = lambda t: len(t.split())  # noqa: E731
    parts = pieces(text, 64, count)
    assert len(parts) > 7 and all(count(p) <= 64 for p in parts)
    assert "".join(parts) == text  # consecutive: nothing in the middle is dropped
    assert all(p.endswith(" ") or p is parts[-1] for p in parts)  # at word boundaries
    assert pieces("short", 64, count) == ["short"]


def test_forget_also_takes_a_fact_out_of_the_recalled_region(tmp_path: Path) -> None:
    engine = fake()
    session = stored(tmp_path, engine, window=400)
    session.feed("user", FACT)
    for i in range(6):  # push the fact out of the window into the recall store
        session.feed("user", f"filler message number {i} " + "lorem ipsum dolor " * 12)
    assert "4471" not in text(engine)
    engine.enqueue("it is 4471")
    session.ask("What is the access code for the blue depot?", Sampling(max_tokens=20))
    assert any("4471" in item.text for item in session.last_recall)
    in_recalled = text(engine)
    assert in_recalled.count("4471") >= 2  # recalled, and the answer
    session.forget("blue depot 4471")
    live = text(engine)
    assert "access code for the blue depot is 4471" not in live  # the recalled copy is gone
    assert all("4471" not in item.text for item in session.last_recall)
