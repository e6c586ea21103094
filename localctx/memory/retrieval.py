"""Recall per turn: which stored passages go back into the context, within a token budget.

The decisions are pure (`excerpt`, `select_within_budget`, `recalled_text`) so they can be
tested exhaustively; `gather` is the thin shell that queries the recall and archival stores.
What was inserted is returned as RecalledItem records, verbatim, so the UI can show exactly
what the model saw.

Why excerpts: an evicted segment is a block of a few hundred tokens; the fact a question asks
about is one sentence of it. Inserting the best-matching sentences (by query-term overlap)
instead of the whole block fits 3-4x more hits into the same budget.
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
MIN_ITEM_TOKENS = 24  # a snippet cut shorter than this rarely keeps a whole fact
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Candidate:
    source: str  # "recall" | "archival"
    id: str  # "s3", "m12", or "repo:path:10-42"
    text: str
    score: float


@dataclass(frozen=True)
class RecalledItem:
    source: str
    id: str
    text: str  # exactly what was inserted
    score: float
    n_tokens: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ArchivalSearch(Protocol):
    def search(self, query: str, k: int, repo: str | None = None) -> Sequence[Any]: ...


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
    """Best-first, skipping any that would overflow; duplicates of earlier text dropped."""
    chosen: list[RecalledItem] = []
    used = 0
    seen: set[str] = set()
    for cand in candidates:
        if len(chosen) >= max_items:
            break
        key = " ".join(cand.text.split()).lower()
        if not key or key in seen or any(key in s for s in seen):
            continue
        text, n = cand.text, count(cand.text)
        room = budget_tokens - used
        if n > room:
            if room < MIN_ITEM_TOKENS:
                continue
            text = cand.text[: len(cand.text) * room // n]  # keep the head: excerpts lead
            n = count(text)  # with the best-matching sentence
            while n > room and text:
                text = text[: len(text) * 9 // 10]
                n = count(text)
            if not text:
                continue
        seen.add(key)
        used += n
        chosen.append(RecalledItem(cand.source, cand.id, text, cand.score, n))
    return chosen


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


def recalled_text(items: Sequence[RecalledItem]) -> str:
    """The body of the recalled message placed right before the user's message."""
    lines = ["Recalled from memory (earlier conversation and files; may be relevant):"]
    lines += [f"[{item.id}] {item.text}" for item in items]
    return "\n".join(lines)


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
    repo: str | None = None,
    k: int = 8,
    max_chars: int = 600,
) -> list[Candidate]:
    """Ranked candidates from the recall store (minus what is already in context) and files."""
    terms = query_terms(query)
    if not terms:
        return []
    ranked = [
        Candidate("recall", hit.id, hit_text(hit, terms, max_chars), hit.score)
        for hit in recall.search(query, k + min(len(exclude), 200), kinds=("segment", "message"))
        if hit.id not in exclude
    ]
    ranked = above_floor(ranked)[:k]
    files: list[Candidate] = []
    if archival is not None:
        for hit in above_floor(list(archival.search(query, k, repo=repo))):
            where = f"{hit.path}:{hit.start_line}-{hit.end_line}"
            files.append(
                Candidate(
                    "archival",
                    where,
                    f"{where}\n{excerpt(hit.text, terms, max_chars)}",
                    float(hit.score),
                )
            )
    return interleave(ranked, files)
