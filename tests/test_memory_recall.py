"""Recall store: migrations from empty, round trips, hostile FTS5 input, forgetting, corruption."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
from pathlib import Path

import pytest

from localctx.errors import BadInput, StoreCorrupt
from localctx.memory.fts import match_expression, query_terms
from localctx.memory.recall import RecallStore, parse_id
from localctx.memory.schema import MIGRATIONS


@pytest.fixture
def store(tmp_path: Path) -> RecallStore:
    return RecallStore(tmp_path / "db" / "recall.sqlite3")


def test_migrations_from_empty_create_a_private_store(tmp_path: Path) -> None:
    path = tmp_path / "db" / "recall.sqlite3"
    RecallStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    conn = sqlite3.connect(path)
    names = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert names == {name for name, _ in MIGRATIONS}
    assert {"sessions", "messages", "segments", "segment_messages", "core", "recall_fts"} <= tables
    assert "open_turn_rows" in tables
    RecallStore(path).close()  # re-opening applies nothing twice
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


def test_messages_segments_core_round_trip(store: RecallStore) -> None:
    sid = store.session_id("work")
    assert store.session_id("work") == sid
    m1 = store.add_message(sid, "user", "The access code for the blue depot is 4471.")
    m2 = store.add_message(sid, "assistant", "")
    store.set_message_content(m2, " Noted.")
    assert store.messages(sid) == [
        (m1, "user", "The access code for the blue depot is 4471."),
        (m2, "assistant", " Noted."),
    ]
    seg = store.add_segment(sid, seq=0, text="code for the blue depot is 4471", n_tokens=9,
                            message_ids=[m1, -3])  # fmt: skip
    assert [p.id for p in store.pending_segments()] == [seg]
    store.set_summary(seg, "Blue depot code: 4471.", running=(sid, "Blue depot code: 4471."))
    assert store.pending_segments() == []
    assert store.running_summary(sid) == "Blue depot code: 4471."
    got = store.get(f"s{seg}")
    assert got is not None and got.summary == "Blue depot code: 4471." and got.session == "work"
    assert store.covered_message_ids(sid) == {m1}
    cid = store.add_core("My name is Ana.")
    assert store.core() == [(cid, "My name is Ana.")]
    assert {h.id for h in store.search("blue depot code")} >= {f"m{m1}", f"s{seg}"}
    assert store.search("Ana")[0].id == f"c{cid}"
    counts = store.counts()
    assert counts["messages"] == 2 and counts["segments"] == 1 and counts["core"] == 1


def test_summary_text_is_searchable(store: RecallStore) -> None:
    sid = store.session_id("s")
    seg = store.add_segment(sid, seq=0, text="filler words only", n_tokens=3, message_ids=[])
    assert store.search("zebra") == []
    store.set_summary(seg, "a zebra was mentioned")
    assert [h.id for h in store.search("zebra")] == [f"s{seg}"]


HOSTILE = [
    '"',
    '"unbalanced',
    "AND",
    "blue AND",
    "OR OR NOT",
    "*",
    "depot*",
    "body:blue",
    "kind:segment",
    "NEAR(blue depot, 2)",
    "(((",
    ")",
    "'; DROP TABLE messages; --",
    "-blue +depot ^code",
    "{blue depot}",
    "\\",
    "",
    "    ",
    "?!.,",
    "日本語 ü ß",
    "a" * 5000,
    " ".join(f"w{i}" for i in range(500)),
]


@pytest.mark.parametrize("text", HOSTILE)
def test_fts5_syntax_in_user_text_never_raises(store: RecallStore, text: str) -> None:
    sid = store.session_id("s")
    store.add_message(sid, "user", "the blue depot code is 4471 and body kind segment")
    assert isinstance(store.search(text), list)
    # forgetting by the same text either matches narrowly or says there is nothing to match
    if query_terms(text):
        assert isinstance(store.forget(text).ids, tuple)
    else:
        with pytest.raises(BadInput):
            store.forget(text)


def test_hostile_text_still_finds_its_words(store: RecallStore) -> None:
    sid = store.session_id("s")
    mid = store.add_message(sid, "user", "the blue depot code is 4471")
    assert [h.id for h in store.search('"blue AND depot*: (4471')] == [f"m{mid}"]


def test_match_expression_quotes_every_term() -> None:
    assert match_expression("What is the code for the BLUE depot?") == '"code" OR "blue" OR "depot"'
    assert match_expression("blue depot", require_all=True) == '"blue" AND "depot"'
    assert match_expression("the of and") is None
    assert match_expression('"') is None


def test_parse_id() -> None:
    assert parse_id("s3") == ("segment", 3)
    assert parse_id(" M12 ") == ("message", 12)
    assert parse_id("c2") == ("core", 2)
    assert parse_id("blue depot") is None
    assert parse_id("x3") is None


def test_forget_a_message_takes_its_segments_and_summaries(store: RecallStore) -> None:
    sid = store.session_id("s")
    keep = store.add_message(sid, "user", "the red harbor code is 1234")
    gone = store.add_message(sid, "user", "the blue depot code is 4471")
    s_keep = store.add_segment(sid, seq=0, text="red harbor 1234", n_tokens=3, message_ids=[keep])
    s_gone = store.add_segment(sid, seq=1, text="blue depot 4471", n_tokens=3, message_ids=[gone])
    store.set_summary(s_keep, "Red harbor: 1234.")
    store.set_summary(s_gone, "Blue depot: 4471.", running=(sid, "Red harbor: 1234.\nBlue: 4471."))
    result = store.forget(f"m{gone}")
    assert set(result.ids) == {f"m{gone}", f"s{s_gone}"}
    assert result.sessions == ("s",)
    assert store.search("4471") == []
    assert "4471" not in store.running_summary(sid)
    assert "1234" in store.running_summary(sid)
    assert store.get(f"s{s_keep}") is not None


def test_forget_by_query_needs_every_word(store: RecallStore) -> None:
    sid = store.session_id("s")
    a = store.add_message(sid, "user", "blue depot 4471")
    b = store.add_message(sid, "user", "blue harbor 9999")
    assert store.forget("blue depot").ids == (f"m{a}",)
    assert store.get(f"m{b}") is not None
    with pytest.raises(BadInput):
        store.forget("the of")
    assert store.forget("m999").ids == ()


def test_a_committed_row_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "recall.sqlite3"
    first = RecallStore(path)
    sid = first.session_id("s")
    first.add_segment(sid, seq=0, text="pending text", n_tokens=2, message_ids=[])
    # no close(): a crashed process never closes
    again = RecallStore(path)
    assert [p.text for p in again.pending_segments()] == ["pending text"]


@pytest.mark.parametrize(
    "garbage",
    [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 5000],
    ids=["text", "bad-header"],
)
def test_corrupt_sqlite_gives_a_clear_error_and_is_never_overwritten(
    tmp_path: Path, garbage: bytes
) -> None:
    path = tmp_path / "recall.sqlite3"
    path.write_bytes(garbage)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreCorrupt) as err:
        RecallStore(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_ids_are_never_reused_after_a_forget(tmp_path: Path) -> None:
    with RecallStore(tmp_path / "r.sqlite3") as store:
        sid = store.session_id("a")
        m1 = store.add_message(sid, "user", "the newest message")
        c1 = store.add_core("a fact")
        store.forget(f"m{m1}")
        store.forget(f"c{c1}")
        m2 = store.add_message(sid, "user", "a later message")
        c2 = store.add_core("another fact")
        assert m2 > m1 and c2 > c1
        store.discard_message(m2)
        assert store.add_message(sid, "user", "again") > m2
        store.delete_session(sid)
        assert store.add_message(store.session_id("b"), "user", "x") > m2 + 1


def test_a_store_from_before_the_id_migration_keeps_its_rows_and_ids(tmp_path: Path) -> None:
    from localctx.memory import db

    path = tmp_path / "old.sqlite3"
    conn = db.connect(path, MIGRATIONS[:1])
    conn.execute("INSERT INTO sessions (name) VALUES ('old')")
    conn.execute("INSERT INTO messages (session_id, role, content) VALUES (1, 'user', 'kept')")
    conn.commit()
    conn.close()
    with RecallStore(path) as store:
        assert [row[2] for row in store.messages(1)] == ["kept"]
        assert store.add_message(1, "user", "new") == 2


def test_discard_message_leaves_the_running_summary(tmp_path: Path) -> None:
    with RecallStore(tmp_path / "r.sqlite3") as store:
        sid = store.session_id("a")
        store.set_running_summary(sid, "condensed by the model")
        mid = store.add_message(sid, "user", "half a paste")
        store.discard_message(mid)
        assert store.messages(sid) == []
        assert store.search("paste") == []
        assert store.running_summary(sid) == "condensed by the model"


def test_sessions_lists_newest_first_with_last_message_and_size(tmp_path: Path) -> None:
    with RecallStore(tmp_path / "r.sqlite3") as store:
        a = store.session_id("alpha")
        store.add_message(a, "user", "hello alpha")
        b = store.session_id("beta")
        store.add_message(b, "user", "question")
        store.add_message(b, "assistant", "an answer é")
        store.session_id("empty")
        rows = {row.name: row for row in store.sessions()}
        assert rows["beta"].messages == 2 and rows["beta"].last_role == "assistant"
        assert rows["beta"].last_text == "an answer é"
        assert rows["beta"].text_bytes == len("question") + len("an answer é".encode())
        assert rows["alpha"].last_text == "hello alpha" and rows["empty"].messages == 0
        names = [row.name for row in store.sessions()]
        assert names.index("beta") < names.index("alpha")  # ties (same second): newest id first
