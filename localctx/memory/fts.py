"""Turn free user text into a safe FTS5 MATCH expression (pure).

User text goes straight into searches ("what's the code for the blue depot?"), and FTS5 has its
own query language: quotes, `AND`/`OR`/`NOT`/`NEAR`, `*`, `:` column filters and parentheses all
mean something and a stray one raises "fts5: syntax error". So we never pass user text through:
we keep only word characters, drop stopwords, and quote every term ("term"), which FTS5 reads
as a plain phrase of one token. Quoting also neutralises a word that happens to be `AND`.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Mapping, Sequence

# Stopwords dominate a BM25 OR-query over prose and push the one relevant segment down; the
# list is short on purpose (English function words only), so a question about "the code" still
# matches on "code".
_STOPWORDS_TEXT = """
    a an and are as at be but by can could did do does for from had has have he her his how i
    if in into is it its me my no not of on or our she so than that the their them then there
    these they this to was we were what when where which who whom why will with would you your
    about tell please know remember
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 24  # a pasted paragraph must not become a 400-term query (slow, and all noise)


def query_terms(text: str) -> list[str]:
    """Distinct lower-case word terms of `text`, stopwords dropped, in first-seen order."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS or (len(word) == 1 and not word.isdigit()):
            continue
        seen.setdefault(word, None)
        if len(seen) >= MAX_TERMS:
            break
    return list(seen)


def match_expression(text: str, *, require_all: bool = False) -> str | None:
    """An FTS5 expression over the terms of `text`, or None when nothing searchable is left.

    `require_all` joins terms with AND (forgetting by query must be narrow); otherwise OR, and
    BM25 ranks rows matching more and rarer terms first (recall should be broad).
    """
    terms = query_terms(text)
    if not terms:
        return None
    joiner = " AND " if require_all else " OR "
    return joiner.join(f'"{term}"' for term in terms)


def idf(df: int, n_docs: int) -> float:
    """BM25's inverse document frequency (always > 0): rare terms weigh more."""
    return math.log((n_docs - df + 0.5) / (df + 0.5) + 1.0)


def weighted_coverage(
    terms: Sequence[str], present: set[str], df: Mapping[str, int], n_docs: int
) -> float:
    """The IDF-weighted share of the query's terms that a row contains (pure, 0..1).

    Why weighted: "Write a Python function that reverses a string" shares "python",
    "function" and "string" with half of any codebase; those weigh little, the one rare word
    ("reverses") most. A term the index has never seen weighs the most of all, so a question
    about something nobody mentioned scores low everywhere — the absolute relevance floor is
    a threshold on this share (measured, see retrieval.ABSOLUTE_FLOOR).
    """
    weights = {t: idf(df.get(t, 0), n_docs) for t in terms}
    total = sum(weights.values())
    return sum(w for t, w in weights.items() if t in present) / total if total else 0.0


def term_presence(
    conn: sqlite3.Connection, table: str, terms: Sequence[str], rowids: Sequence[int]
) -> tuple[dict[str, int], dict[int, set[str]], int]:
    """Document frequency of each term, which of `rowids` contain it, and the row count.

    One FTS5 lookup per term (the index's own tokenizer and stemmer decide a match, so
    "reverses" matches a row saying "reverse"); ~0.1 ms per term on a 10K-row index.
    """
    n_docs = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    df: dict[str, int] = {}
    present: dict[int, set[str]] = {r: set() for r in rowids}
    marks = ",".join("?" * len(rowids))
    for term in terms:
        quoted = f'"{term}"'
        df[term] = int(
            conn.execute(
                f"SELECT count(*) FROM {table} WHERE {table} MATCH ?", (quoted,)
            ).fetchone()[0]
        )
        if df[term] and rowids:
            for (rowid,) in conn.execute(
                f"SELECT rowid FROM {table} WHERE {table} MATCH ? AND rowid IN ({marks})",
                (quoted, *rowids),
            ):
                present[int(rowid)].add(term)
    return df, present, n_docs
