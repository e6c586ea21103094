"""Recall per turn: which stored passages go back into the context, within a token budget.

The decisions are pure (`excerpt`, `select_within_budget`, `recalled_text`) so they can be
tested exhaustively; `gather` is the thin shell that queries the recall and archival stores.
What was inserted is returned as RecalledItem records, verbatim, so the UI can show exactly
what the model saw.

Why excerpts: an evicted segment is a block of a few hundred tokens; the fact a question asks
about is one sentence of it. Inserting the best-matching sentences (by query-term overlap)
instead of the whole block fits 3-4x more hits into the same budget. Code is never cut into
sentences: a repository hit keeps its lines as they are, labelled `path:start-end · symbol`
so the model can cite them, and a hit cut to fit the budget loses whole lines from its end
(its label says which lines remain).

Scope: recall reads this session's messages and segments only (and the repository, and core
memory, which is pinned anyway); other sessions only when the caller asks (`recall_all`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from localctx.memory.fts import query_terms
from localctx.memory.recall import RecallHit, RecallStore

CountTokens = Callable[[str], int]
RELATIVE_FLOOR = 0.5  # of the best BM25 score: below it a hit matched only common words
# The absolute floor for conversation memory: a passage must hold at least this IDF-weighted
# share of the question's terms (fts.weighted_coverage). Measured on 20 planted facts in 200
# passages of English prose: the fact's passage scored 0.40-0.66 for the 24 direct questions
# and 0.21-0.57 for 12 paraphrased ones; the best passage for 20 off-topic questions ("Write
# a Python function that reverses a string", "What is a monad?") scored 0-0.58, 11 of them
# under 0.30. 0.25 keeps every direct question and 10 of 12 paraphrases, and drops 9 of 20
# off-topic recalls (the rest share real words with the prose: "speed of light").
RECALL_FLOOR = 0.25
MIN_ITEM_TOKENS = 24  # a snippet cut shorter than this rarely keeps a whole fact
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Candidate:
    source: str  # "recall" | "archival"
    id: str  # "s3", "m12", or "path:10-42"
    text: str
    score: float
    path: str = ""  # archival: the file, its lines and the enclosing symbol
    start_line: int = 0
    end_line: int = 0
    symbol: str = ""
    session: str | None = None  # recall: the session the passage came from


@dataclass(frozen=True)
class RecalledItem:
    source: str
    id: str
    text: str  # exactly what was inserted (the body; the label is built from the fields)
    score: float
    n_tokens: int
    path: str = ""
    start_line: int = 0
    end_line: int = 0
    symbol: str = ""
    session: str | None = None

    @property
    def citation(self) -> str:
        """`path:start-end · symbol` for code, the store id for memory."""
        if self.source != "archival":
            return self.id
        where = f"{self.path}:{self.start_line}-{self.end_line}"
        return f"{where} · {self.symbol}" if self.symbol else where

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ArchivalSearch(Protocol):
    """The attached repository's code search (ingest.RepoContext): one ranking for all;
    `recall` is its best hits that clear the relevance floors (memory.code_search)."""

    def recall(self, query: str, k: int = 5) -> Sequence[Any]: ...


def excerpt(text: str, terms: Sequence[str], max_chars: int) -> str:
    """The run of consecutive sentences with the most query terms, at most max_chars (pure)."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    wanted = {t.lower() for t in terms}

    def hits(sentence: str) -> int:
        return sum(1 for w in re.findall(r"\w+", sentence.lower()) if w in wanted)

    best, best_score = 0, -1
    for i, sentence in enumerate(sentences):
        score = hits(sentence)
        if score > best_score:
            best, best_score = i, score
    lo = hi = best
    size = len(sentences[best])
    while True:  # grow around the best sentence while it fits, preferring the richer side
        left = sentences[lo - 1] if lo > 0 else None
        right = sentences[hi + 1] if hi + 1 < len(sentences) else None
        options = [(hits(s), side, s) for side, s in (("l", left), ("r", right)) if s is not None]
        options = [o for o in options if size + 1 + len(o[2]) <= max_chars]
        if not options:
            break
        _, side, sentence = max(options, key=lambda o: o[0])
        size += 1 + len(sentence)
        lo, hi = (lo - 1, hi) if side == "l" else (lo, hi + 1)
    chosen = " ".join(s.strip() for s in sentences[lo : hi + 1])
    return chosen[:max_chars]


def select_within_budget(
    candidates: Iterable[Candidate], budget_tokens: int, count: CountTokens, *, max_items: int = 8
) -> list[RecalledItem]:
    """Best-first, skipping any that would overflow; duplicates of earlier text dropped.

    A hit larger than the room left is cut: code by whole lines from its end (the label then
    names the lines kept), prose by characters (excerpts lead with their best sentence).
    """
    chosen: list[RecalledItem] = []
    used = 0
    seen: set[str] = set()
    for cand in candidates:
        if len(chosen) >= max_items:
            break
        key = " ".join(cand.text.split()).lower()
        if not key or key in seen or any(key in s for s in seen):
            continue
        room = budget_tokens - used
        n = count(cand.text)
        if n > room and room < MIN_ITEM_TOKENS:
            continue
        cut = _cut_code(cand, room, count) if cand.path else _cut_prose(cand.text, room, count)
        if cut is None:
            continue
        text, n, end_line = cut
        seen.add(key)
        used += n
        chosen.append(
            RecalledItem(
                cand.source,
                cand.id,
                text,
                cand.score,
                n,
                cand.path,
                cand.start_line,
                end_line if cand.path else 0,
                cand.symbol,
                cand.session,
            )
        )
    return chosen


def _cut_prose(text: str, room: int, count: CountTokens) -> tuple[str, int, int] | None:
    n = count(text)
    if n <= room:
        return text, n, 0
    text = text[: len(text) * room // n]
    n = count(text)
    while n > room and text:
        text = text[: len(text) * 9 // 10]
        n = count(text)
    return (text, n, 0) if text else None


def _cut_code(cand: Candidate, room: int, count: CountTokens) -> tuple[str, int, int] | None:
    """The chunk's first lines that fit `room` tokens, and the last line number kept."""
    lines = cand.text.splitlines(keepends=True)
    n = count(cand.text)
    keep = len(lines)
    while n > room and keep > 1:
        keep = max(1, min(keep - 1, keep * room // max(n, 1)))
        n = count("".join(lines[:keep]))
    if n > room or not lines:
        return None
    text = "".join(lines[:keep])
    return text, n, cand.start_line + keep - 1 if cand.start_line else 0


def above_floor(ranked: list[Any]) -> list[Any]:
    """Hits scoring at least RELATIVE_FLOOR of the best one (pure; `score` higher = better).

    Why: a question shares its generic words ("access code") with many stored passages and
    its rare ones ("violet garage") with one. Passages matching only the generic words are
    distractors; in `bench needle` a 135M model answered with a neighbouring fact's number.
    """
    if not ranked:
        return ranked
    best = max(float(h.score) for h in ranked)
    return [h for h in ranked if best <= 0 or float(h.score) >= best * RELATIVE_FLOOR]


def interleave(*ranked: Sequence[Candidate]) -> list[Candidate]:
    """Round-robin across sources: BM25 scores of different indexes are not comparable."""
    out: list[Candidate] = []
    for i in range(max((len(r) for r in ranked), default=0)):
        out.extend(r[i] for r in ranked if i < len(r))
    return out


SOURCES_HEADER = (
    "Sources from the repository, the most relevant first. Answer from them; name the file"
    " and cite path:line for what you use. If they do not answer the question, say so."
)
MEMORY_HEADER = "From earlier in this conversation (may be relevant):"
MEMORY_ALL_HEADER = "From earlier conversations (may be relevant):"


def recalled_text(items: Sequence[RecalledItem]) -> str:
    """The body of the recalled message placed right before the user's message: labelled
    repository sources first, then passages from the conversation's memory."""
    code = [item for item in items if item.source == "archival"]
    memory = [item for item in items if item.source != "archival"]
    parts: list[str] = []
    if code:
        body = [SOURCES_HEADER]
        for n, item in enumerate(code, 1):
            body.append(f"[{n}] {item.citation}\n{item.text.rstrip()}")
        parts.append("\n\n".join(body))
    if memory:
        header = MEMORY_ALL_HEADER if any(i.session for i in memory) else MEMORY_HEADER
        parts.append("\n".join([header, *(f"[{i.id}] {i.text}" for i in memory)]))
    return "\n\n".join(parts)


def hit_text(hit: RecallHit, terms: Sequence[str], max_chars: int) -> str:
    """The verbatim excerpt; a segment that matched only through its summary gives that.

    Verbatim first: the exact words hold the fact (a 135M model's summary often loses the
    number), and the running summary in the pinned region already carries the summaries.
    """
    body = excerpt(hit.text, terms, max_chars)
    wanted = set(terms)
    if hit.kind == "segment" and hit.summary and not wanted & set(re.findall(r"\w+", body.lower())):
        return f"(summary) {excerpt(hit.summary, terms, max_chars)}"
    return body


def gather(
    query: str,
    recall: RecallStore,
    *,
    exclude: set[str],
    archival: ArchivalSearch | None = None,
    code_query: str | None = None,
    session_id: int | None = None,
    k: int = 8,
    max_chars: int = 600,
) -> list[Candidate]:
    """Ranked candidates from the recall store (minus what is already in context) and files.

    `session_id` keeps recall to that session; None searches every session (and each
    candidate then names the session it came from). `code_query` is what the repository is
    searched with (the question and the model's guess at its code; default the question).
    """
    terms = query_terms(query)
    if not terms:
        return []
    hits = recall.search(
        query, k + min(len(exclude), 200), kinds=("segment", "message"), session_id=session_id
    )
    ranked = [
        Candidate(
            "recall",
            hit.id,
            hit_text(hit, terms, max_chars),
            hit.score,
            session=hit.session if session_id is None else None,
        )
        for hit in hits
        if hit.id not in exclude and hit.coverage >= RECALL_FLOOR
    ]
    ranked = above_floor(ranked)[:k]
    files: list[Candidate] = []
    if archival is not None:
        for hit in archival.recall(code_query or query, k):
            files.append(
                Candidate(
                    "archival",
                    f"{hit.path}:{hit.start_line}-{hit.end_line}",
                    hit.text,
                    float(hit.score),
                    hit.path,
                    hit.start_line,
                    hit.end_line,
                    hit.symbol,
                )
            )
    return interleave(files, ranked)
