"""Text shaping for the archival index: what gets indexed beside the code, and safe queries.

FTS5's unicode61 tokenizer already splits `snake_case` (the underscore is a separator) but keeps
`camelCase` whole, so each chunk also indexes the camelCase parts of its identifiers ("terms"
column): a question about "console options" then finds `ConsoleOptions`. A user's query is never
passed to FTS5 as syntax: it becomes an OR of quoted words, so `AND`, `"`, `*`, `NEAR(` or a
lone `-` in a question cannot raise. Pure functions.
"""

from __future__ import annotations

import re

_CAMEL = re.compile(r"\b[A-Za-z]*[a-z][A-Z][A-Za-z0-9]*")
_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_WORD = re.compile(r"[A-Za-z0-9]+")

# Question words and glue that match almost every chunk and only dilute BM25.
_STOPWORDS = """
    a an and are as at be by can do does for from how i if in into is it its me my of on or
    should so that the their then there these this to use used uses using was what when where
    which who why will with you your"""
STOPWORDS = frozenset(_STOPWORDS.split())
MAX_QUERY_TERMS = 32


def camel_parts(text: str) -> str:
    """The words inside every camelCase/PascalCase identifier of `text`, space-separated."""
    seen: set[str] = set()
    out: list[str] = []
    for ident in _CAMEL.findall(text):
        if ident in seen:
            continue
        seen.add(ident)
        out.extend(_PARTS.findall(ident))
    return " ".join(out)


def query_terms(query: str) -> list[str]:
    """Lower-cased search words of a free-text query (identifiers split), stopwords dropped."""
    words: list[str] = []
    for raw in _WORD.findall(query.replace("_", " ")):
        parts = _PARTS.findall(raw) if _CAMEL.fullmatch(raw) else [raw]
        for part in [raw, *parts] if len(parts) > 1 else parts:
            word = part.lower()
            if word not in STOPWORDS and word not in words:
                words.append(word)
    return words[:MAX_QUERY_TERMS]


def fts_query(query: str) -> str | None:
    """An FTS5 MATCH expression for `query` (an OR of quoted terms), or None if it has none."""
    terms = query_terms(query)
    if not terms:
        return None
    return " OR ".join(f'"{term}"' for term in terms)
