"""RecallStore: every message verbatim, every evicted segment and its summary, core memory.

One SQLite file (`<home>/db/recall.sqlite3`, WAL, 0600) with an FTS5 index over all three kinds
so one BM25 query searches everything the model has seen. Rows are addressed by a kind-prefixed
id the CLI and UI show: `m12` (message), `s3` (evicted segment), `c2` (core memory). An id is
never handed out twice, even after its row is forgotten (a second `/forget m12` must not hit a
newer message).

A turn is stored whole or not at all: `begin_turn` writes its messages and records them in
`open_turn_rows`, every segment evicted meanwhile joins that record as it is written (so a kill
-9 during a long prefill leaves them on disk), and `commit_turn` fills in the answer and clears
the record in one transaction. A turn that failed (a full disk, a broken engine) or whose
process died is taken back by `discard_turn`: its messages and segments go, and the store is
what it was before the turn, matching the session's last KV snapshot.

Must not: call the model or touch the KV cache (the summarizer and the session do that), and
never rewrite a committed row except to add a summary — a crash leaves what was committed.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from localctx.errors import BadInput
from localctx.memory import db
from localctx.memory.fts import match_expression, query_terms, term_presence, weighted_coverage
from localctx.memory.schema import MIGRATIONS

KINDS = {"m": "message", "s": "segment", "c": "core"}
_ID = re.compile(r"^([msc])(\d+)$")


@dataclass(frozen=True)
class RecallHit:
    id: str  # "m12", "s3", "c2"
    kind: str  # "message" | "segment" | "core"
    text: str  # the verbatim text (message content, segment text, core fact)
    summary: str  # the segment's summary ("" for other kinds or while pending)
    score: float  # BM25, higher is better
    session: str | None = None
    coverage: float = 1.0  # IDF-weighted share of the query's terms the row holds (0..1)


@dataclass(frozen=True)
class SessionSummary:
    """One line of the sessions list (`/sessions`, `localctx memory sessions`)."""

    name: str
    model: str
    created_at: str  # SQLite datetime, UTC
    active_at: str  # the newest message's time (the creation time without messages)
    messages: int
    text_bytes: int  # UTF-8 bytes of its messages
    last_role: str
    last_text: str

    def to_json(self) -> dict[str, object]:
        return dict(vars(self))


@dataclass(frozen=True)
class PendingSegment:
    id: int
    session_id: int
    text: str


@dataclass(frozen=True)
class Forgotten:
    ids: tuple[str, ...]  # "m12", "s3", "c2" deleted
    sessions: tuple[str, ...]  # sessions whose messages or summaries changed

    def numbers(self, prefix: str) -> set[int]:
        return {int(i[1:]) for i in self.ids if i.startswith(prefix)}


def parse_id(value: str) -> tuple[str, int] | None:
    """`"s3"` -> ("segment", 3); anything else -> None (then it is a query)."""
    match = _ID.match(value.strip().lower())
    return (KINDS[match.group(1)], int(match.group(2))) if match else None


class RecallStore:
    """Thread-safe (one lock): the session writes between turns, a UI worker may read."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or db.store_path("recall")
        self._conn = db.connect(self.path, MIGRATIONS)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock, db.guarded(self.path):
            self._conn.close()

    def __enter__(self) -> RecallStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sessions
    def session_id(self, name: str, *, model: str = "") -> int:
        """The id of session `name`, created on first use."""
        with self._lock, db.guarded(self.path), self._conn:
            row = self._conn.execute("SELECT id FROM sessions WHERE name = ?", (name,)).fetchone()
            if row:
                self._conn.execute(
                    "UPDATE sessions SET updated_at = datetime('now') WHERE id = ?", (row[0],)
                )
                return int(row[0])
            cur = self._conn.execute(
                "INSERT INTO sessions (name, model) VALUES (?, ?)", (name, model)
            )
            return int(cur.lastrowid or 0)

    def session_exists(self, name: str) -> bool:
        with self._lock, db.guarded(self.path):
            row = self._conn.execute("SELECT 1 FROM sessions WHERE name = ?", (name,)).fetchone()
            return row is not None

    def delete_session(self, session_id: int) -> None:
        """Remove a session and everything it stored (an ephemeral `ask` leaves nothing)."""
        with self._lock, db.guarded(self.path), self._conn:
            c = self._conn
            for kind, table in (("message", "messages"), ("segment", "segments")):
                ids = [
                    int(r[0])
                    for r in c.execute(
                        f"SELECT id FROM {table} WHERE session_id = ?", (session_id,)
                    )
                ]
                c.executemany(
                    "DELETE FROM recall_fts WHERE rowid = ?", [(_fts_rowid(kind, i),) for i in ids]
                )
            c.execute(
                "DELETE FROM segment_messages WHERE segment_id IN"
                " (SELECT id FROM segments WHERE session_id = ?)",
                (session_id,),
            )
            c.execute("DELETE FROM segments WHERE session_id = ?", (session_id,))
            c.execute("DELETE FROM messages WHERE session_id = ?", (session_id,))
            c.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    def running_summary(self, session_id: int) -> str:
        with self._lock, db.guarded(self.path):
            row = self._conn.execute(
                "SELECT running_summary FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            return str(row[0]) if row else ""

    def set_running_summary(self, session_id: int, text: str) -> None:
        with self._lock, db.guarded(self.path), self._conn:
            self._conn.execute(
                "UPDATE sessions SET running_summary = ? WHERE id = ?", (text, session_id)
            )

    def snapshot_key(self, session_id: int) -> str | None:
        with self._lock, db.guarded(self.path):
            row = self._conn.execute(
                "SELECT snapshot_key FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            return str(row[0]) if row and row[0] else None

    def set_snapshot_key(self, session_id: int, key: str | None) -> None:
        with self._lock, db.guarded(self.path), self._conn:
            self._conn.execute(
                "UPDATE sessions SET snapshot_key = ? WHERE id = ?", (key, session_id)
            )

    # ------------------------------------------------------------------ turns
    def begin_turn(self, session_id: int, messages: Iterable[tuple[str, str]]) -> list[int]:
        """Store a turn's messages (the answer's row may start empty), marked open; their ids."""
        rows = [(role, _utf8(content)) for role, content in messages]
        with self._lock, db.guarded(self.path), self._conn:
            ids = []
            for role, content in rows:
                mid = self._fresh_id("message", "messages")
                self._conn.execute(
                    "INSERT INTO messages (id, session_id, role, content) VALUES (?, ?, ?, ?)",
                    (mid, session_id, role, content),
                )
                self._index("message", mid, content)
                self._conn.execute(
                    "INSERT INTO open_turn_rows (session_id, kind, ref_id)"
                    " VALUES (?, 'message', ?)",
                    (session_id, mid),
                )
                ids.append(mid)
            return ids

    def commit_turn(self, session_id: int, contents: dict[int, str] | None = None) -> None:
        """Fill in the turn's messages (the answer) and close it, in one transaction."""
        with self._lock, db.guarded(self.path), self._conn:
            for mid, content in (contents or {}).items():
                self._conn.execute(
                    "UPDATE messages SET content = ? WHERE id = ?", (_utf8(content), mid)
                )
                self._unindex("message", mid)
                self._index("message", mid, content)
            self._conn.execute("DELETE FROM open_turn_rows WHERE session_id = ?", (session_id,))

    def has_open_turn(self, session_id: int) -> bool:
        with self._lock, db.guarded(self.path):
            row = self._conn.execute(
                "SELECT 1 FROM open_turn_rows WHERE session_id = ? LIMIT 1", (session_id,)
            ).fetchone()
            return row is not None

    def discard_turn(self, session_id: int) -> int:
        """Take back an open turn: delete the rows it wrote. Returns how many went."""
        with self._lock, db.guarded(self.path), self._conn:
            c = self._conn
            rows = c.execute(
                "SELECT kind, ref_id FROM open_turn_rows WHERE session_id = ?", (session_id,)
            ).fetchall()
            for kind, ref in rows:
                if kind == "message":
                    c.execute("DELETE FROM messages WHERE id = ?", (ref,))
                else:
                    c.execute("DELETE FROM segment_messages WHERE segment_id = ?", (ref,))
                    c.execute("DELETE FROM segments WHERE id = ?", (ref,))
                self._unindex(str(kind), int(ref))
            c.execute("DELETE FROM open_turn_rows WHERE session_id = ?", (session_id,))
            return len(rows)

    def last_message_id(self, session_id: int) -> int:
        """The newest stored message of a session (0: none): what a KV snapshot must hold."""
        with self._lock, db.guarded(self.path):
            row = self._conn.execute(
                "SELECT max(id) FROM messages WHERE session_id = ?", (session_id,)
            ).fetchone()
            return int(row[0] or 0)

    # ------------------------------------------------------------------ messages
    def add_message(self, session_id: int, role: str, content: str) -> int:
        with self._lock, db.guarded(self.path), self._conn:
            mid = self._fresh_id("message", "messages")
            self._conn.execute(
                "INSERT INTO messages (id, session_id, role, content) VALUES (?, ?, ?, ?)",
                (mid, session_id, role, _utf8(content)),
            )
            self._index("message", mid, content)
            return mid

    def set_message_content(self, message_id: int, content: str) -> None:
        """Fill in an assistant message once generation ended (the row exists from its start)."""
        with self._lock, db.guarded(self.path), self._conn:
            self._conn.execute(
                "UPDATE messages SET content = ? WHERE id = ?", (content, message_id)
            )
            self._unindex("message", message_id)
            self._index("message", message_id, content)

    def messages(self, session_id: int) -> list[tuple[int, str, str]]:
        """(id, role, content) of a session, oldest first."""
        with self._lock, db.guarded(self.path):
            rows = self._conn.execute(
                "SELECT id, role, content FROM messages WHERE session_id = ? ORDER BY id",
                (session_id,),
            ).fetchall()
            return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    # ------------------------------------------------------------------ segments
    def add_segment(
        self,
        session_id: int,
        *,
        seq: int,
        text: str,
        n_tokens: int,
        message_ids: Iterable[int],
        stream: tuple[int, int] = (0, 0),
    ) -> int:
        """Store an evicted segment verbatim, its summary pending (committed before returning)."""
        ids = sorted({int(m) for m in message_ids if int(m) > 0})
        with self._lock, db.guarded(self.path), self._conn:
            sid = self._fresh_id("segment", "segments")
            self._conn.execute(
                "INSERT INTO segments (id, session_id, seq, stream_start, stream_end, n_tokens,"
                " text, message_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (sid, session_id, seq, stream[0], stream[1], n_tokens, text, json.dumps(ids)),
            )
            self._conn.executemany(
                "INSERT OR IGNORE INTO segment_messages (segment_id, message_id) VALUES (?, ?)",
                [(sid, m) for m in ids],
            )
            self._index("segment", sid, text)
            # Evicted while a turn is open: it is part of that turn (taken back with it).
            self._conn.execute(
                "INSERT INTO open_turn_rows (session_id, kind, ref_id)"
                " SELECT ?, 'segment', ? WHERE EXISTS"
                " (SELECT 1 FROM open_turn_rows WHERE session_id = ?)",
                (session_id, sid, session_id),
            )
            return sid

    def pending_segments(
        self, limit: int | None = None, *, session_id: int | None = None
    ) -> list[PendingSegment]:
        """Segments still waiting for a summary, oldest first (from this run or a crashed one);
        `session_id` keeps to one session (a session summarizes only its own)."""
        scope = "" if session_id is None else " AND session_id = ?"
        args: tuple[int, ...] = () if session_id is None else (session_id,)
        with self._lock, db.guarded(self.path):
            rows = self._conn.execute(
                "SELECT id, session_id, text FROM segments WHERE summary_status = 'pending'"
                " AND id NOT IN (SELECT ref_id FROM open_turn_rows WHERE kind = 'segment')"
                f"{scope} ORDER BY id LIMIT ?",
                (*args, -1 if limit is None else limit),
            ).fetchall()
            return [PendingSegment(int(r[0]), int(r[1]), str(r[2])) for r in rows]

    def set_summary(
        self, segment_id: int, summary: str, *, running: tuple[int, str] | None = None
    ) -> None:
        """Record a segment's summary and, in the same transaction, the new running summary."""
        with self._lock, db.guarded(self.path), self._conn:
            self._conn.execute(
                "UPDATE segments SET summary = ?, summary_status = 'done' WHERE id = ?",
                (summary, segment_id),
            )
            row = self._conn.execute("SELECT text FROM segments WHERE id = ?", (segment_id,))
            text = row.fetchone()
            if text is not None:
                self._unindex("segment", segment_id)
                self._index("segment", segment_id, f"{text[0]}\n{summary}")
            if running is not None:
                self._conn.execute(
                    "UPDATE sessions SET running_summary = ? WHERE id = ?",
                    (running[1], running[0]),
                )

    def segment_summaries(self, session_id: int) -> list[str]:
        with self._lock, db.guarded(self.path):
            rows = self._conn.execute(
                "SELECT summary FROM segments WHERE session_id = ? AND summary_status = 'done'"
                " ORDER BY id",
                (session_id,),
            ).fetchall()
            return [str(r[0]) for r in rows if r[0]]

    # ------------------------------------------------------------------ core memory
    def add_core(self, text: str) -> int:
        if not text.strip():
            raise BadInput("nothing to remember: give the fact as text")
        with self._lock, db.guarded(self.path), self._conn:
            cid = self._fresh_id("core", "core")
            self._conn.execute("INSERT INTO core (id, text) VALUES (?, ?)", (cid, text.strip()))
            self._index("core", cid, text.strip())
            return cid

    def core(self) -> list[tuple[int, str]]:
        with self._lock, db.guarded(self.path):
            rows = self._conn.execute("SELECT id, text FROM core ORDER BY id").fetchall()
            return [(int(r[0]), str(r[1])) for r in rows]

    # ------------------------------------------------------------------ search
    def search(
        self,
        query: str,
        k: int = 8,
        *,
        kinds: Iterable[str] = ("message", "segment", "core"),
        session_id: int | None = None,
    ) -> list[RecallHit]:
        """BM25 over every kind; user text is made safe by `match_expression` (never raises).

        `session_id` keeps messages and segments to that session (core memory is global);
        None searches every session.
        """
        expr = match_expression(query)
        if expr is None or k <= 0:
            return []
        wanted = tuple(kinds)
        marks = ",".join("?" * len(wanted))
        scope = ""
        params: list[str | int] = [expr, *wanted]
        if session_id is not None:
            # Only the rows of kind message/segment need the join; BM25's statistics stay
            # those of the whole index, which only matters for ranking within one query.
            scope = (
                " AND (kind = 'core'"
                " OR (kind = 'message' AND ref_id IN"
                " (SELECT id FROM messages WHERE session_id = ?))"
                " OR (kind = 'segment' AND ref_id IN"
                " (SELECT id FROM segments WHERE session_id = ?)))"
            )
            params += [session_id, session_id]
        with self._lock, db.guarded(self.path):
            rows = self._conn.execute(
                "SELECT kind, ref_id, bm25(recall_fts) AS rank, rowid FROM recall_fts"
                f" WHERE recall_fts MATCH ? AND kind IN ({marks}){scope} ORDER BY rank LIMIT ?",
                (*params, k),
            ).fetchall()
            terms = query_terms(query)
            df, present, n_docs = term_presence(
                self._conn, "recall_fts", terms, [int(r[3]) for r in rows]
            )
            hits = []
            for r in rows:
                hit = self._hit(str(r[0]), int(r[1]), -float(r[2]))
                if hit is not None:
                    cover = weighted_coverage(terms, present[int(r[3])], df, n_docs)
                    hits.append(replace(hit, coverage=round(cover, 4)))
            return hits

    def get(self, item_id: str) -> RecallHit | None:
        parsed = parse_id(item_id)
        if parsed is None:
            return None
        with self._lock, db.guarded(self.path):
            return self._hit(parsed[0], parsed[1], 0.0)

    def _hit(self, kind: str, ref: int, score: float) -> RecallHit | None:
        c = self._conn
        if kind == "message":
            row = c.execute(
                "SELECT m.role, m.content, s.name FROM messages m"
                " JOIN sessions s ON s.id = m.session_id WHERE m.id = ?",
                (ref,),
            ).fetchone()
            if row is None:
                return None
            return RecallHit(f"m{ref}", kind, f"{row[0]}: {row[1]}", "", score, row[2])
        if kind == "segment":
            row = c.execute(
                "SELECT g.text, g.summary, s.name FROM segments g"
                " JOIN sessions s ON s.id = g.session_id WHERE g.id = ?",
                (ref,),
            ).fetchone()
            if row is None:
                return None
            return RecallHit(f"s{ref}", kind, str(row[0]), str(row[1] or ""), score, row[2])
        row = c.execute("SELECT text FROM core WHERE id = ?", (ref,)).fetchone()
        return None if row is None else RecallHit(f"c{ref}", kind, str(row[0]), "", score)

    def covered_message_ids(self, session_id: int) -> set[int]:
        """Messages of a session that some stored segment holds (so recall prefers the segment)."""
        with self._lock, db.guarded(self.path):
            rows = self._conn.execute(
                "SELECT DISTINCT sm.message_id FROM segment_messages sm"
                " JOIN segments g ON g.id = sm.segment_id WHERE g.session_id = ?",
                (session_id,),
            ).fetchall()
            return {int(r[0]) for r in rows}

    # ------------------------------------------------------------------ listing
    def list_items(self, limit: int = 50) -> list[RecallHit]:
        """Newest first, all kinds interleaved by creation time."""
        with self._lock, db.guarded(self.path):
            rows = self._conn.execute(
                "SELECT kind, ref_id FROM ("
                " SELECT 'message' AS kind, id AS ref_id, created_at FROM messages"
                " UNION ALL SELECT 'segment', id, created_at FROM segments"
                " UNION ALL SELECT 'core', id, created_at FROM core)"
                " ORDER BY created_at DESC, ref_id DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [h for r in rows if (h := self._hit(str(r[0]), int(r[1]), 0.0))]

    def iter_all(self) -> Iterator[dict[str, object]]:
        """Every row as a plain dict (export): sessions' messages, segments, core."""
        with self._lock, db.guarded(self.path):
            rows = list(
                self._conn.execute(
                    "SELECT m.id, s.name, m.role, m.content, m.created_at FROM messages m"
                    " JOIN sessions s ON s.id = m.session_id ORDER BY m.id"
                )
            )
            segs = list(
                self._conn.execute(
                    "SELECT g.id, s.name, g.text, g.summary, g.summary_status, g.n_tokens,"
                    " g.message_ids, g.created_at FROM segments g"
                    " JOIN sessions s ON s.id = g.session_id ORDER BY g.id"
                )
            )
            core = list(self._conn.execute("SELECT id, text, created_at FROM core ORDER BY id"))
        for r in rows:
            yield {"id": f"m{r[0]}", "kind": "message", "session": r[1], "role": r[2],
                   "text": r[3], "created_at": r[4]}  # fmt: skip
        for r in segs:
            yield {"id": f"s{r[0]}", "kind": "segment", "session": r[1], "text": r[2],
                   "summary": r[3] or "", "summary_status": r[4], "n_tokens": r[5],
                   "message_ids": json.loads(r[6] or "[]"), "created_at": r[7]}  # fmt: skip
        for r in core:
            yield {"id": f"c{r[0]}", "kind": "core", "text": r[1], "created_at": r[2]}

    def counts(self) -> dict[str, int]:
        with self._lock, db.guarded(self.path):
            one = self._conn.execute
            return {
                "sessions": int(one("SELECT count(*) FROM sessions").fetchone()[0]),
                "messages": int(one("SELECT count(*) FROM messages").fetchone()[0]),
                "segments": int(one("SELECT count(*) FROM segments").fetchone()[0]),
                "summaries_pending": int(
                    one("SELECT count(*) FROM segments WHERE summary_status='pending'").fetchone()[
                        0
                    ]
                ),
                "core": int(one("SELECT count(*) FROM core").fetchone()[0]),
            }

    def file_bytes(self) -> int:
        return sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )

    # ------------------------------------------------------------------ forgetting
    def forget(self, id_or_query: str) -> Forgotten:
        """Delete by id, or every row matching ALL the query's terms.

        Forgetting a message also deletes the segments (and so the summaries) that hold it; the
        running summaries of the sessions touched are rebuilt from the summaries that remain.
        """
        parsed = parse_id(id_or_query)
        with self._lock, db.guarded(self.path):
            if parsed is not None:
                targets = [parsed]
            else:
                expr = match_expression(id_or_query, require_all=True)
                if expr is None:
                    raise BadInput(f"nothing to forget: '{id_or_query}' has no searchable words")
                rows = self._conn.execute(
                    "SELECT kind, ref_id FROM recall_fts WHERE recall_fts MATCH ?", (expr,)
                ).fetchall()
                targets = [(str(r[0]), int(r[1])) for r in rows]
            with self._conn:
                return self._delete(targets)

    def _delete(self, targets: list[tuple[str, int]]) -> Forgotten:
        c = self._conn
        deleted: list[str] = []
        sessions: set[int] = set()
        segment_ids: set[int] = set()
        for kind, ref in targets:
            if kind == "message":
                row = c.execute("SELECT session_id FROM messages WHERE id = ?", (ref,)).fetchone()
                if row is None:
                    continue
                sessions.add(int(row[0]))
                held = c.execute(
                    "SELECT segment_id FROM segment_messages WHERE message_id = ?", (ref,)
                ).fetchall()
                segment_ids.update(int(r[0]) for r in held)
                c.execute("DELETE FROM messages WHERE id = ?", (ref,))
                self._unindex("message", ref)
                deleted.append(f"m{ref}")
            elif kind == "segment":
                segment_ids.add(ref)
            elif c.execute("DELETE FROM core WHERE id = ?", (ref,)).rowcount:
                self._unindex("core", ref)
                deleted.append(f"c{ref}")
        for sid in sorted(segment_ids):
            row = c.execute("SELECT session_id FROM segments WHERE id = ?", (sid,)).fetchone()
            if row is None:
                continue
            sessions.add(int(row[0]))
            c.execute("DELETE FROM segment_messages WHERE segment_id = ?", (sid,))
            c.execute("DELETE FROM segments WHERE id = ?", (sid,))
            self._unindex("segment", sid)
            deleted.append(f"s{sid}")
        for session in sessions:
            remaining = c.execute(
                "SELECT summary FROM segments WHERE session_id = ? AND summary_status = 'done'"
                " ORDER BY id",
                (session,),
            ).fetchall()
            rebuilt = "\n".join(str(r[0]) for r in remaining if r[0])
            c.execute(
                "UPDATE sessions SET running_summary = ? WHERE id = ?", (rebuilt[-4000:], session)
            )
        names = [
            str(r[0])
            for s in sorted(sessions)
            if (r := c.execute("SELECT name FROM sessions WHERE id = ?", (s,)).fetchone())
        ]
        return Forgotten(tuple(deleted), tuple(names))

    def discard_message(self, message_id: int) -> None:
        """Take back a message that never became part of the conversation (a prefill stopped
        half-way, a retracted turn): the row and its index entry only — unlike `forget`, the
        running summary is left as it is (nothing was summarized from it)."""
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            self._unindex("message", message_id)

    # ------------------------------------------------------------------ sessions overview
    def sessions(self, limit: int = 200) -> list[SessionSummary]:
        """Sessions, most recently active first, with their newest message and size."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT s.id, s.name, s.model, s.created_at, count(m.id),"
                " coalesce(sum(length(CAST(m.content AS BLOB))), 0),"
                " coalesce(max(m.created_at), s.updated_at) AS active"
                " FROM sessions s LEFT JOIN messages m ON m.session_id = s.id"
                " GROUP BY s.id ORDER BY active DESC, s.id DESC LIMIT ?",
                (limit,),
            ).fetchall()
            out = []
            for r in rows:
                last = self._conn.execute(
                    "SELECT role, content FROM messages WHERE session_id = ?"
                    " AND content != '' ORDER BY id DESC LIMIT 1",
                    (int(r[0]),),
                ).fetchone()
                out.append(
                    SessionSummary(
                        name=str(r[1]),
                        model=str(r[2] or ""),
                        created_at=str(r[3]),
                        active_at=str(r[6]),
                        messages=int(r[4]),
                        text_bytes=int(r[5]),
                        last_role=str(last[0]) if last else "",
                        last_text=str(last[1]) if last else "",
                    )
                )
            return out

    def _fresh_id(self, kind: str, table: str) -> int:
        """Above every id the table holds and every id it ever deleted (migration 0002)."""
        row = self._conn.execute(
            f"SELECT max(coalesce((SELECT max(id) FROM {table}), 0),"
            " coalesce((SELECT high FROM retired_ids WHERE kind = ?), 0)) + 1",
            (kind,),
        ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ FTS upkeep
    # The FTS rowid encodes (kind, id) so an update or delete is a rowid lookup, not a scan of
    # the UNINDEXED columns (a 128K-token history stores thousands of segments).
    def _index(self, kind: str, ref: int, body: str) -> None:
        self._conn.execute(
            "INSERT INTO recall_fts (rowid, body, kind, ref_id) VALUES (?, ?, ?, ?)",
            (_fts_rowid(kind, ref), body, kind, ref),
        )

    def _unindex(self, kind: str, ref: int) -> None:
        self._conn.execute("DELETE FROM recall_fts WHERE rowid = ?", (_fts_rowid(kind, ref),))


_KIND_CODE = {"message": 1, "segment": 2, "core": 3}


def _utf8(text: str) -> str:
    """Text SQLite can store: lone surrogates (undecodable bytes from a shell) are refused
    before anything is written, not half-way through a turn."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadInput(f"the text is not valid UTF-8 (at character {exc.start})") from None
    return text


def _fts_rowid(kind: str, ref: int) -> int:
    return ref * 4 + _KIND_CODE[kind]
