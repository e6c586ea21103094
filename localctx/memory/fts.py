"""Turn free user text into a safe FTS5 MATCH expression (pure).

User text goes straight into searches ("what's the code for the blue depot?"), and FTS5 has its
own query language: quotes, `AND`/`OR`/`NOT`/`NEAR`, `*`, `:` column filters and parentheses all
mean something and a stray one raises "fts5: syntax error". So we never pass user text through:
we keep only word characters, drop stopwords, and quote every term ("term"), which FTS5 reads
as a plain phrase of one token. Quoting also neutralises a word that happens to be `AND`.
"""

from __future__ import annotations

import re

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
