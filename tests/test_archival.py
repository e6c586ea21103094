"""The archival store: BM25 ranking sanity, hostile queries, per-file replacement, repo filter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from localctx.errors import StoreCorrupt
from localctx.memory.archival import ArchivalStore, FileState
from localctx.memory.archival_query import camel_parts, coverage, fts_query, query_words


@dataclass(frozen=True)
class _Chunk:
    start_line: int
    end_line: int
    symbol: str
    kind: str
    text: str


def _put(store: ArchivalStore, repo: str, path: str, *chunks: _Chunk, sha: str = "s") -> None:
    with store.transaction():
        store.put_file(repo, path, FileState(sha, 10, 1), "python", False, chunks)


@pytest.fixture
def store(tmp_path: Path) -> ArchivalStore:
    s = ArchivalStore.open(tmp_path / "archival.sqlite3")
    yield s
    s.close()


def test_symbol_and_path_outrank_a_passing_mention(store: ArchivalStore) -> None:
    _put(store, "r", "src/tokenizer.py",
         _Chunk(1, 9, "Tokenizer.split_words", "definition",
                "def split_words(self, text):\n    return text.split()\n"))  # fmt: skip
    _put(store, "r", "src/other.py",
         _Chunk(1, 3, "helper", "definition",
                "def helper():\n    # we could split words here some day\n    pass\n"))  # fmt: skip
    _put(store, "r", "docs/notes.md", _Chunk(1, 2, "Notes", "section", "Unrelated prose.\n"))
    hits = store.search("split words tokenizer", k=5)
    assert [h.path for h in hits][:2] == ["src/tokenizer.py", "src/other.py"]
    assert hits[0].symbol == "Tokenizer.split_words" and hits[0].score > hits[1].score
    assert (hits[0].start_line, hits[0].end_line, hits[0].language) == (1, 9, "python")


def test_camel_case_names_match_separate_words(store: ArchivalStore) -> None:
    _put(
        store, "r", "a.ts", _Chunk(1, 2, "ConsoleOptions", "definition", "class ConsoleOptions {}")
    )
    _put(store, "r", "b.ts", _Chunk(1, 2, "Other", "definition", "class Other {}"))
    assert [h.path for h in store.search("console options")] == ["a.ts"]


@pytest.mark.parametrize(
    "query",
    ['"unbalanced', "AND OR NOT", "NEAR(a b", "col:thing", "*", "-", "a^b", "(((", "", "  ",
     "the a of", "x' OR 1=1 --", "\x00", "🙂"],
)  # fmt: skip
def test_fts_syntax_in_a_query_never_raises(store: ArchivalStore, query: str) -> None:
    _put(store, "r", "a.py", _Chunk(1, 1, "thing", "definition", "thing = 1  # col and near"))
    assert isinstance(store.search(query), list)


def test_one_hit_per_symbol_and_k(store: ArchivalStore) -> None:
    windows = [_Chunk(i * 10 + 1, i * 10 + 10, "parse", "definition", f"parse step {i}\n")
               for i in range(6)]  # fmt: skip
    _put(store, "r", "p.py", *windows, _Chunk(90, 95, "parse_args", "definition", "parse args\n"))
    hits = store.search("parse", k=5)
    assert [h.symbol for h in hits] == ["parse", "parse_args"]
    assert store.search("parse", k=1)[0].symbol in {"parse", "parse_args"}
    assert store.search("parse", k=0) == []


def test_put_replaces_a_file_and_remove_deletes_it(store: ArchivalStore) -> None:
    _put(store, "r", "a.py", _Chunk(1, 1, "old_name", "definition", "old body"))
    _put(store, "r", "a.py", _Chunk(1, 1, "new_name", "definition", "new body"), sha="t")
    assert store.search("old") == []
    assert [h.symbol for h in store.search("new")] == ["new_name"]
    assert store.file_states("r") == {"a.py": FileState("t", 10, 1)}
    with store.transaction():
        store.remove_file("r", "a.py")
    assert store.search("new") == [] and store.file_states("r") == {}


def test_repo_filter_and_forget(store: ArchivalStore) -> None:
    _put(store, "/one", "a.py", _Chunk(1, 1, "shared", "definition", "shared code"))
    _put(store, "/two", "a.py", _Chunk(1, 1, "shared", "definition", "shared code"))
    with store.transaction():
        store.set_repo("/one", "/one", "digest", "key")
        store.set_repo("/two", "/two", "digest", "key")
    assert {h.repo for h in store.search("shared")} == {"/one", "/two"}
    assert [h.repo for h in store.search("shared", repo="/two")] == ["/two"]
    assert store.forget_repo("/one") == 1
    assert [r.repo for r in store.repos()] == ["/two"]
    assert {h.repo for h in store.search("shared")} == {"/two"}


def test_a_failed_batch_leaves_nothing(store: ArchivalStore) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.put_file("r", "a.py", FileState("s", 1, 1), "python", False,
                       [_Chunk(1, 1, "ghost", "definition", "ghost")])  # fmt: skip
        raise RuntimeError("killed mid-batch")
    assert store.search("ghost") == [] and store.file_states("r") == {}


def test_a_file_that_is_not_sqlite_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "archival.sqlite3"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreCorrupt):
        ArchivalStore.open(path)
    assert path.read_bytes().startswith(b"not a database")


def test_query_shaping_is_pure() -> None:
    assert fts_query("How does the ConsoleOptions update?") == (
        '"consoleoptions" OR "console" OR "options" OR "update"'
    )
    assert fts_query("the of and") is None
    assert query_words("styles added")[1] == ["added", "add", "ad"]  # porter stems it "ad"
    assert camel_parts("x = parseHTTPResponse(a)") == "parse HTTP Response"
    assert coverage(query_words("split words"), "def split_words") == 1.0
    assert coverage(query_words("split words"), "def split") == 0.5


def test_v2_upgrade_marks_old_rows_stale_so_they_are_reread(tmp_path: Path) -> None:
    from localctx.memory import archival
    from localctx.memory.db import connect

    path = tmp_path / "archival.sqlite3"
    old = connect(path, archival.MIGRATIONS[:1])
    old.execute(
        "INSERT INTO files (repo, path, sha, size, mtime_ns, language) VALUES"
        " ('r', 'a.py', 'abc', 10, 5, 'python')"
    )
    old.commit()
    old.close()
    with ArchivalStore.open(path) as store:
        assert store.file_states("r") == {"a.py": FileState("", 10, -1)}
        assert list(store.file_identifiers("r")) == [("a.py", "")]


def test_path_prior_prefers_implementation_over_tests_and_prose() -> None:
    from localctx.memory.archival_query import path_prior

    assert path_prior("django/shortcuts.py", "python") == 1.0
    assert path_prior("tests/test_shortcuts.py", "python") == pytest.approx(0.5)
    assert path_prior("pkg/widget.spec.ts", "typescript") == pytest.approx(0.5)
    assert path_prior("internal/server_test.go", "go") == pytest.approx(0.5)
    assert path_prior("docs/intro.txt", "text") == pytest.approx(0.7)
    assert path_prior("tests/README.md", "markdown") == pytest.approx(0.35)
    assert path_prior("contest/attestation.py", "python") == 1.0  # "test" inside a word
