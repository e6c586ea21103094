"""The archival tier: repository chunks in SQLite FTS5, searched with BM25.

One store file (`<home>/db/archival.sqlite3`) holds every ingested repository, keyed by the
resolved root path. A file row carries the content hash of the bytes last indexed, so re-ingest
skips unchanged files without reading their chunks; a file's chunks are replaced as a unit
inside the caller's transaction (the indexer commits per batch, so a kill -9 loses at most the
open batch and never leaves a half-indexed file or a duplicate). The FTS row id is the chunk id.
Ranking is BM25 with the path and symbol columns weighted above the body (weights below were
tuned on the rich QA set in tests/data). This module knows nothing of walking or chunking.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from localctx.memory.archival_query import (
    camel_parts,
    coverage,
    fts_query,
    path_prior,
    prose_of,
    query_terms,
    query_words,
)
from localctx.memory.db import Migration, connect, guarded, store_path
from localctx.memory.dense import DenseIndex, dense_key, embed_view, from_blobs, tail_key, tail_text
from localctx.memory.fts import term_presence, weighted_coverage

# bm25() column weights: path, symbol, body, camelCase parts, prose (docstrings, comments).
# The prose column repeats words of the body, and FTS5 normalizes by a row's length over all
# columns, so at weight 0 it only penalizes documented code (werkzeug span@5 0.28 -> 0.17);
# at 4 (bench retrieval, lexical; 2/3/6/8 tried) rich 0.93 -> 0.97, Django 0.80 = 0.80
# (@10 0.80 -> 0.93), werkzeug 0.28 -> 0.33 (@10 0.31 -> 0.39). httpx was not looked at.
WEIGHTS = (3.0, 6.0, 1.0, 1.0, 4.0)
RERANK_POOL = 40  # BM25 candidates re-ranked by coverage (~1 ms of Python for 40)


@dataclass(frozen=True)
class ArchivalHit:
    repo: str
    path: str
    start_line: int
    end_line: int
    symbol: str
    language: str
    text: str
    score: float  # -bm25 x coverage: higher is better; comparable only within one query
    chunk_id: int = 0
    coverage: float = 0.0  # share of the question's words the chunk holds (0..1)

    def to_json(self) -> dict[str, object]:
        return {
            "repo": self.repo,
            "path": self.path,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "symbol": self.symbol,
            "language": self.language,
            "score": round(self.score, 4),
            "text": self.text,
        }


@dataclass(frozen=True)
class FileState:
    sha: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class RepoRecord:
    repo: str
    root: str
    digest: str
    digest_key: str
    files: int
    chunks: int
    bytes: int
    updated_at: str


class ChunkLike(Protocol):
    @property
    def start_line(self) -> int: ...
    @property
    def end_line(self) -> int: ...
    @property
    def symbol(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def text(self) -> str: ...


def _v1(conn: sqlite3.Connection) -> None:
    # Statement by statement: executescript() would COMMIT the migration's open transaction.
    for statement in (
        "CREATE TABLE repos ("
        " repo TEXT PRIMARY KEY, root TEXT NOT NULL,"
        " digest TEXT NOT NULL DEFAULT '', digest_key TEXT NOT NULL DEFAULT '',"
        " files INTEGER NOT NULL DEFAULT 0, chunks INTEGER NOT NULL DEFAULT 0,"
        " bytes INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL DEFAULT (datetime('now')))",
        "CREATE TABLE files ("
        " id INTEGER PRIMARY KEY, repo TEXT NOT NULL, path TEXT NOT NULL, sha TEXT NOT NULL,"
        " size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, language TEXT NOT NULL,"
        " non_utf8 INTEGER NOT NULL DEFAULT 0, UNIQUE (repo, path))",
        "CREATE TABLE chunks ("
        " id INTEGER PRIMARY KEY,"
        " file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,"
        " start_line INTEGER NOT NULL, end_line INTEGER NOT NULL,"
        " symbol TEXT NOT NULL, kind TEXT NOT NULL)",
        "CREATE INDEX chunks_by_file ON chunks (file_id)",
        "CREATE VIRTUAL TABLE chunks_fts USING fts5 ("
        " path, symbol, body, terms, tokenize = 'porter unicode61')",
    ):
        conn.execute(statement)


def _v2(conn: sqlite3.Connection) -> None:
    # The identifiers a file uses, for the digest's ranking: computed once per file content
    # (in the chunking workers) instead of re-scanning every chunk on each digest (1.4 of the
    # 1.5 CPU-s a one-file change to Django cost). Rows from before are made stale so the
    # next ingest re-reads them and fills the column.
    conn.execute("ALTER TABLE files ADD COLUMN idents TEXT NOT NULL DEFAULT ''")
    conn.execute("UPDATE files SET sha = '', mtime_ns = -1")


def _v3(conn: sqlite3.Connection) -> None:
    # Dense vectors for code search, keyed by the hash of the text embedded (path, symbol and
    # chunk text) and the embedding model, so an unchanged chunk is never embedded twice and
    # a re-ingest that rewrites a file's chunks finds their vectors still there.
    conn.execute("ALTER TABLE chunks ADD COLUMN hash TEXT NOT NULL DEFAULT ''")
    conn.execute("CREATE INDEX chunks_by_hash ON chunks (hash)")
    conn.execute(
        "CREATE TABLE vectors ("
        " hash TEXT NOT NULL, model TEXT NOT NULL, vec BLOB NOT NULL,"
        " PRIMARY KEY (hash, model)) WITHOUT ROWID"
    )
    conn.execute("UPDATE files SET sha = '', mtime_ns = -1")  # re-chunk once to fill `hash`


def _v4(conn: sqlite3.Connection) -> None:
    # A column for each chunk's prose (docstrings and comments, archival_query.prose_of),
    # weighted on its own. FTS5 cannot add a column, so the index is copied into a new table
    # with the column filled from the stored text: no re-ingest, vectors untouched.
    conn.create_function("prose_of", 1, prose_of, deterministic=True)
    conn.execute(
        "CREATE VIRTUAL TABLE chunks_fts_v4 USING fts5 ("
        " path, symbol, body, terms, prose, tokenize = 'porter unicode61')"
    )
    conn.execute(
        "INSERT INTO chunks_fts_v4 (rowid, path, symbol, body, terms, prose)"
        " SELECT rowid, path, symbol, body, terms, prose_of(body) FROM chunks_fts"
    )
    conn.execute("DROP TABLE chunks_fts")
    conn.execute("ALTER TABLE chunks_fts_v4 RENAME TO chunks_fts")


def _v5(conn: sqlite3.Connection) -> None:
    # A second vector for the tail of a chunk longer than the embedder reads (dense.tail_text),
    # keyed like the head. Files are re-chunked once to fill the key (chunking is cheap; head
    # vectors are kept: their keys do not change).
    conn.execute("ALTER TABLE chunks ADD COLUMN tail_hash TEXT NOT NULL DEFAULT ''")
    conn.execute("UPDATE files SET sha = '', mtime_ns = -1")


MIGRATIONS: list[Migration] = [
    ("archival_v1_repos_files_chunks_fts", _v1),
    ("archival_v2_file_identifiers", _v2),
    ("archival_v3_chunk_hashes_and_vectors", _v3),
    ("archival_v4_prose_column", _v4),
    ("archival_v5_tail_vectors", _v5),
]


class ArchivalStore:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path | None = None) -> ArchivalStore:
        path = path or store_path("archival")
        return cls(connect(path, MIGRATIONS), path)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> ArchivalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- search -----------------------------------------------------------------------------

    def search(self, query: str, k: int = 5, repo: str | None = None) -> list[ArchivalHit]:
        """The `k` best chunks for a free-text query by words alone; FTS5 syntax in it never
        raises. (memory.code_search fuses this with dense search.)

        BM25 (path and symbol weighted) picks candidates, at most one per (path, symbol) so
        the windows of one long function cannot fill every slot; they are then re-ranked by
        the share of the question's words each covers (archival_query.coverage) and a mild
        prior for implementation code over tests and prose (archival_query.path_prior).
        """
        words = query_words(query)
        match = fts_query(query)
        if match is None or k <= 0:
            return []
        sql = (
            "SELECT f.repo, f.path, c.start_line, c.end_line, c.symbol, f.language, t.body,"
            " bm25(chunks_fts, ?, ?, ?, ?, ?) AS rank, c.id"
            " FROM chunks_fts t JOIN chunks c ON c.id = t.rowid JOIN files f ON f.id = c.file_id"
            " WHERE chunks_fts MATCH ?"
            + (" AND f.repo = ?" if repo is not None else "")
            + " ORDER BY rank, c.id LIMIT ?"
        )
        params: list[object] = [*WEIGHTS, match]
        if repo is not None:
            params.append(repo)
        pool = max(k, RERANK_POOL)
        params.append(pool * 3)
        try:
            rows = self._conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:  # defensive: a query FTS5 still refuses finds nothing
            return []
        candidates: list[ArchivalHit] = []
        taken: set[tuple[str, str, str]] = set()
        for r in rows:
            key = (r[0], r[1], r[4] or f"@{r[2]}")  # unnamed chunks are distinct by position
            if key not in taken and len(candidates) < pool:
                taken.add(key)
                cover = coverage(words, f"{r[1]} {r[4]} {r[6]}")
                prior = path_prior(r[1], r[5])
                candidates.append(
                    ArchivalHit(r[0], r[1], r[2], r[3], r[4], r[5], r[6], -r[7] * cover * prior,
                                r[8], cover)
                )  # fmt: skip
        candidates.sort(key=lambda h: -h.score)  # stable: BM25 order breaks ties
        return candidates[:k]

    def hits_by_ids(self, chunk_ids: Sequence[int]) -> dict[int, ArchivalHit]:
        """The chunks with these ids (score 0), for hits found by their vectors."""
        if not chunk_ids:
            return {}
        marks = ",".join("?" * len(chunk_ids))
        rows = self._conn.execute(
            "SELECT f.repo, f.path, c.start_line, c.end_line, c.symbol, f.language, t.body, c.id"
            " FROM chunks c JOIN files f ON f.id = c.file_id JOIN chunks_fts t ON t.rowid = c.id"
            f" WHERE c.id IN ({marks})",
            list(chunk_ids),
        ).fetchall()
        return {
            r[7]: ArchivalHit(r[0], r[1], r[2], r[3], r[4], r[5], r[6], 0.0, r[7]) for r in rows
        }

    def weighted_coverage(self, query: str, chunk_ids: Sequence[int]) -> dict[int, float]:
        """Each chunk's IDF-weighted share of the query's terms (memory.fts), by chunk id."""
        terms = query_terms(query)
        if not terms or not chunk_ids:
            return {}
        df, present, n_docs = term_presence(self._conn, "chunks_fts", terms, list(chunk_ids))
        return {cid: weighted_coverage(terms, present[cid], df, n_docs) for cid in chunk_ids}

    # --- dense vectors (memory.dense) -------------------------------------------------------

    def chunks_without_vectors(self, repo: str, model: str) -> list[tuple[str, str]]:
        """(key, text to embed) of each distinct chunk head and tail of `repo` lacking a
        vector, heads first (a pass cut short has searched every chunk at least once)."""
        out: list[tuple[str, str]] = []
        for column, view in (("hash", lambda b: b), ("tail_hash", tail_text)):
            rows = self._conn.execute(
                f"SELECT c.{column}, f.path, c.symbol, t.body FROM chunks c"
                " JOIN files f ON f.id = c.file_id JOIN chunks_fts t ON t.rowid = c.id"
                f" WHERE f.repo = ? AND c.{column} != '' AND NOT EXISTS"
                f" (SELECT 1 FROM vectors v WHERE v.hash = c.{column} AND v.model = ?)"
                f" GROUP BY c.{column} ORDER BY min(c.id)",
                (repo, model),
            )
            out += [(r[0], embed_view(r[1], r[2], view(r[3]))) for r in rows]
        return list(dict(out).items())  # a tail equal to some head is embedded once

    def vector_count(self, repo: str) -> int:
        """Vectors `repo` has when every chunk is embedded (heads, and tails of long ones)."""
        (n,) = self._conn.execute(
            "SELECT count(*) + sum(c.tail_hash != '') FROM chunks c"
            " JOIN files f ON f.id = c.file_id WHERE f.repo = ?",
            (repo,),
        ).fetchone()
        return int(n or 0)

    def put_vectors(self, model: str, rows: Sequence[tuple[str, bytes]]) -> None:
        """Store vectors, committed as one batch (the dense pass resumes after a kill)."""
        with self.transaction():
            self._conn.executemany(
                "INSERT OR REPLACE INTO vectors (hash, model, vec) VALUES (?, ?, ?)",
                [(key, model, blob) for key, blob in rows],
            )

    def load_dense(self, repo: str, model: str, dim: int) -> DenseIndex:
        """Every vector of `repo`'s chunks, as a matrix for exact search."""
        rows = self._conn.execute(
            "SELECT c.id, v.vec FROM chunks c JOIN files f ON f.id = c.file_id"
            " LEFT JOIN vectors v ON v.hash = c.hash AND v.model = ? WHERE f.repo = ?"
            " ORDER BY c.id",
            (model, repo),
        ).fetchall()
        tails = self._conn.execute(
            "SELECT c.id, v.vec FROM chunks c JOIN files f ON f.id = c.file_id"
            " JOIN vectors v ON v.hash = c.tail_hash AND v.model = ?"
            " WHERE f.repo = ? AND c.tail_hash != '' ORDER BY c.id",
            (model, repo),
        ).fetchall()
        heads = [(r[0], r[1]) for r in rows if r[1] is not None]
        have = heads + [(r[0], r[1]) for r in tails]
        ids = np.array([i for i, _ in have], dtype=np.int64)
        return DenseIndex(ids, from_blobs([b for _, b in have], dim), len(rows) - len(heads))

    # --- writing (the indexer's side) ------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic batch: everything inside commits together or not at all. A full disk
        or a read-only mount is its own error (db.classify), never "corrupt"."""
        with guarded(self.path):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._conn.commit()
            except BaseException:
                self._conn.rollback()  # also after a failed COMMIT (SQLite keeps it open)
                raise

    def file_states(self, repo: str) -> dict[str, FileState]:
        rows = self._conn.execute(
            "SELECT path, sha, size, mtime_ns FROM files WHERE repo = ?", (repo,)
        )
        return {r[0]: FileState(r[1], r[2], r[3]) for r in rows}

    def put_file(
        self,
        repo: str,
        path: str,
        state: FileState,
        language: str,
        non_utf8: bool,
        chunks: Sequence[ChunkLike],
        idents: str = "",
    ) -> None:
        """Replace everything indexed for (repo, path) with these chunks.

        `idents`: the identifiers the file uses, space-separated (for the repo digest).
        """
        file_id = self.begin_file(repo, path, state, language, non_utf8, idents)
        self.add_chunks(file_id, path, chunks)

    def begin_file(
        self,
        repo: str,
        path: str,
        state: FileState,
        language: str,
        non_utf8: bool = False,
        idents: str = "",
    ) -> int:
        """Replace (repo, path) by an empty file row; its chunks follow with `add_chunks`
        (a streamed file adds them piece by piece, then `finish_file`)."""
        self.remove_file(repo, path)
        cur = self._conn.execute(
            "INSERT INTO files (repo, path, sha, size, mtime_ns, language, non_utf8, idents)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (repo, path, state.sha, state.size, state.mtime_ns, language, int(non_utf8), idents),
        )
        return int(cur.lastrowid or 0)

    def add_chunks(self, file_id: int, path: str, chunks: Sequence[ChunkLike]) -> None:
        # Ids assigned here so both tables take one executemany each: the caller holds the
        # write lock (BEGIN IMMEDIATE), so no other writer can take the same ids. Two
        # executes per chunk were a fifth of the indexing time on Django (70K chunks).
        (last,) = self._conn.execute("SELECT coalesce(max(id), 0) FROM chunks").fetchone()
        ids = range(last + 1, last + 1 + len(chunks))
        self._conn.executemany(
            "INSERT INTO chunks (id, file_id, start_line, end_line, symbol, kind, hash, tail_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (i, file_id, c.start_line, c.end_line, c.symbol, c.kind,
                 dense_key(path, c.symbol, c.text), tail_key(path, c.symbol, c.text))
                for i, c in zip(ids, chunks, strict=True)
            ],
        )  # fmt: skip
        self._conn.executemany(
            "INSERT INTO chunks_fts (rowid, path, symbol, body, terms, prose)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (i, path, c.symbol, c.text, camel_parts(c.symbol + " " + c.text), prose_of(c.text))
                for i, c in zip(ids, chunks, strict=True)
            ],
        )

    def finish_file(self, file_id: int, sha: str, non_utf8: bool, idents: str) -> None:
        """A streamed file's hash and flags, known once all of it was read."""
        self._conn.execute(
            "UPDATE files SET sha = ?, non_utf8 = ?, idents = ? WHERE id = ?",
            (sha, int(non_utf8), idents, file_id),
        )

    def touch_file(self, repo: str, path: str, state: FileState) -> None:
        """Same content, new stat: remember the stat so the next run need not read it."""
        self._conn.execute(
            "UPDATE files SET size = ?, mtime_ns = ? WHERE repo = ? AND path = ?",
            (state.size, state.mtime_ns, repo, path),
        )

    def remove_file(self, repo: str, path: str) -> None:
        row = self._conn.execute(
            "SELECT id FROM files WHERE repo = ? AND path = ?", (repo, path)
        ).fetchone()
        if row is None:
            return
        self._conn.execute(
            "DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE file_id = ?)",
            (row[0],),
        )
        self._conn.execute("DELETE FROM chunks WHERE file_id = ?", (row[0],))
        self._conn.execute("DELETE FROM files WHERE id = ?", (row[0],))

    def set_repo(self, repo: str, root: str, digest: str, digest_key: str) -> RepoRecord:
        """Record the repository's digest and refresh its totals."""
        files, size = self._conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE repo = ?", (repo,)
        ).fetchone()
        (chunks,) = self._conn.execute(
            "SELECT count(*) FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.repo = ?",
            (repo,),
        ).fetchone()
        self._conn.execute(
            "INSERT INTO repos (repo, root, digest, digest_key, files, chunks, bytes)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (repo) DO UPDATE SET root = excluded.root,"
            " digest = excluded.digest, digest_key = excluded.digest_key, files = excluded.files,"
            " chunks = excluded.chunks, bytes = excluded.bytes, updated_at = datetime('now')",
            (repo, root, digest, digest_key, files, chunks, size),
        )
        record = self.repo(repo)
        assert record is not None
        return record

    # --- reading for the digest and for `memory` commands ----------------------------------

    def repo(self, repo: str) -> RepoRecord | None:
        row = self._conn.execute(
            "SELECT repo, root, digest, digest_key, files, chunks, bytes, updated_at"
            " FROM repos WHERE repo = ?",
            (repo,),
        ).fetchone()
        return RepoRecord(*row) if row else None

    def repos(self) -> list[RepoRecord]:
        rows = self._conn.execute(
            "SELECT repo, root, digest, digest_key, files, chunks, bytes, updated_at"
            " FROM repos ORDER BY repo"
        )
        return [RepoRecord(*r) for r in rows]

    def forget_repo(self, repo: str) -> int:
        """Remove a repository and everything indexed for it; returns the files removed."""
        with self.transaction():
            paths = [r[0] for r in self._conn.execute("SELECT path FROM files WHERE repo = ?",
                                                      (repo,))]  # fmt: skip
            for path in paths:
                self.remove_file(repo, path)
            self._conn.execute("DELETE FROM repos WHERE repo = ?", (repo,))
        return len(paths)

    def definitions(self, repo: str) -> Iterator[tuple[str, str, int]]:
        """(path, symbol, first line) of every definition, in path order.

        A definition split into several chunks (a large class) has `code` chunks that carry
        its name; Markdown sections are not definitions.
        """
        for row in self._conn.execute(
            "SELECT f.path, c.symbol, min(c.start_line) FROM chunks c"
            " JOIN files f ON f.id = c.file_id"
            " WHERE f.repo = ? AND c.kind IN ('definition', 'code') AND c.symbol != ''"
            " GROUP BY f.path, c.symbol ORDER BY f.path, 3",
            (repo,),
        ):
            yield row[0], row[1], row[2]

    def file_identifiers(self, repo: str) -> Iterator[tuple[str, str]]:
        """(path, space-separated identifiers) of every indexed file, streamed."""
        for row in self._conn.execute(
            "SELECT path, idents FROM files WHERE repo = ? ORDER BY path", (repo,)
        ):
            yield row[0], row[1]

    def paths(self, repo: str) -> Iterable[tuple[str, str]]:
        """(path, language) of every indexed file."""
        return self._conn.execute(
            "SELECT path, language FROM files WHERE repo = ? ORDER BY path", (repo,)
        ).fetchall()
