"""Code search over one repository: lexical (BM25) and dense (embeddings), fused by rank.

The one ranking behind `ask`, the chat and `memory search --repo`, so what a benchmark
measures is what the model is shown. Variants exist for the ablation in `bench retrieval`:
`lexical` (BM25 with coverage and path priors, archival.ArchivalStore.search), `dense`
(cosine x path prior over the chunks that have vectors), `fused` (reciprocal-rank fusion of
the two, memory.dense.rrf; the default whenever vectors exist).

A hit is a span of at most a chunk (400 estimated tokens, ~40-80 lines of code), named by its
enclosing symbol; one hit per (path, symbol) so the windows of one long function cannot fill
every slot. Must not: import llama_cpp (the query embedder is passed in) or the TUI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from localctx.memory.archival import ArchivalHit, ArchivalStore
from localctx.memory.archival_query import coverage, path_prior, query_words
from localctx.memory.dense import DenseIndex, rrf

POOL = 20  # candidates taken from each ranking before fusion
# Absolute floors, measured on the rich and werkzeug sets (66 questions about the code) against
# 20 off-topic questions ("Write a Python function that reverses a string", "What is a monad?")
# over the same repositories: the best hit's cosine was 0.33-0.72 for every question about the
# code and 0.16-0.59 off topic (0.30 drops 9 of the 40 off-topic recalls, no on-topic one);
# the IDF-weighted share of words (memory.fts.weighted_coverage) was 0.16-1.0 on topic and 0
# for 7 of 40 off topic (0.15 drops those: questions sharing no word with the code). Words
# alone cannot tell "How do I install numpy?" from a question about rich's install docs.
COSINE_FLOOR = 0.30
LEXICAL_FLOOR = 0.15
# Fusion weights, chosen on the rich and werkzeug sets (36 and 30 questions; differences of one
# question are noise): the lexical list counts in proportion to how much of the question its
# best hits cover (2 x coverage), the dense list 1.5x. Rich (worded like its identifiers)
# read span@5 0.80 with fixed weights 1/1.5 and 0.83 adaptive; werkzeug (paraphrased) 0.33
# either way; a pool of 20 beat 40 on werkzeug (0.36 vs 0.28 at equal weights).
# Re-chosen with the prose column and tail vectors (same sets): with RRF's usual k = 60 the
# 1/(60 + rank) terms of ranks 1..20 barely differ, so a hit in both lists beat any hit
# first in one, whatever the weights; k = 2 lets a list's first hits count: span@5 werkzeug
# 0.33 -> 0.42, rich 0.87 -> 0.93 (k 60/10/2 x five weightings tried; httpx not looked at).
FUSE_K = 2
DENSE_WEIGHT = 1.5
LEX_BASE = 0.0
LEX_COVER = 1.5
VARIANTS = ("lexical", "dense", "fused")

EmbedQuery = Callable[[str], np.ndarray]


@dataclass
class CodeSearch:
    """Search one repository of an archival store; dense when an index and embedder exist."""

    store: ArchivalStore
    repo: str
    dense: DenseIndex | None = None
    embed_query: EmbedQuery | None = None
    _last: tuple[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def has_dense(self) -> bool:
        return self.dense is not None and self.dense.size > 0 and self.embed_query is not None

    def search(self, query: str, k: int = 5, variant: str | None = None) -> list[ArchivalHit]:
        """The `k` best spans for `query` (variant None: fused when vectors exist)."""
        if k <= 0 or not query.strip():
            return []
        variant = variant or ("fused" if self.has_dense else "lexical")
        lexical = (
            self.store.search(query, max(k, POOL), repo=self.repo) if variant != "dense" else []
        )
        if variant == "lexical" or not self.has_dense:
            return lexical[:k]
        dense = self._dense(query, max(k, POOL))
        if variant == "dense":
            return dense[:k]
        return _fuse(lexical, dense)[:k]

    def recall(self, query: str, k: int = 5) -> list[ArchivalHit]:
        """The best `k` hits that clear the relevance floors: with vectors, each hit's cosine
        to the question (COSINE_FLOOR); without, half the best BM25 score (`relevant`) and an
        IDF-weighted share of the question's words (LEXICAL_FLOOR)."""
        hits = self.search(query, k)
        if not hits:
            return hits
        if self.has_dense:
            assert self.dense is not None
            cosines = self.dense.cosines(self._vector(query), [h.chunk_id for h in hits])
            return [h for h, c in zip(hits, cosines, strict=True) if c >= COSINE_FLOOR]
        hits = relevant(hits)
        shares = self.store.weighted_coverage(query, [h.chunk_id for h in hits])
        return [h for h in hits if shares.get(h.chunk_id, 0.0) >= LEXICAL_FLOOR]

    def _vector(self, query: str) -> np.ndarray:
        """The query's embedding, computed once per query (search and recall share it)."""
        assert self.embed_query is not None
        if self._last is None or self._last[0] != query:
            self._last = (query, np.asarray(self.embed_query(query), dtype=np.float32))
        return self._last[1]

    def _dense(self, query: str, n: int) -> list[ArchivalHit]:
        assert self.dense is not None and self.embed_query is not None
        nearest = self.dense.search(self._vector(query), n * 2)
        found = self.store.hits_by_ids([cid for cid, _ in nearest])
        words = query_words(query)
        hits = []
        for cid, cosine in nearest:
            hit = found.get(cid)
            if hit is not None:
                score = cosine * path_prior(hit.path, hit.language)
                hits.append(replace(hit, score=score, coverage=_coverage(words, hit)))
        hits.sort(key=lambda h: -h.score)
        return _one_per_symbol(hits)[:n]


def _coverage(words: list[list[str]], hit: ArchivalHit) -> float:
    return coverage(words, f"{hit.path} {hit.symbol} {hit.text}")


def _one_per_symbol(hits: list[ArchivalHit]) -> list[ArchivalHit]:
    taken: set[tuple[str, str]] = set()
    out = []
    for hit in hits:
        key = (hit.path, hit.symbol or f"@{hit.start_line}")
        if key not in taken:
            taken.add(key)
            out.append(hit)
    return out


def _fuse(lexical: list[ArchivalHit], dense: list[ArchivalHit]) -> list[ArchivalHit]:
    """Reciprocal-rank fusion; a hit's score becomes its fused score."""
    by_id = {h.chunk_id: h for h in dense}
    by_id.update({h.chunk_id: h for h in lexical})  # lexical rows carry BM25 coverage
    best = max((h.coverage for h in lexical[:3]), default=0.0)
    lex_w = LEX_BASE + LEX_COVER * best
    fused = rrf([[h.chunk_id for h in lexical], [h.chunk_id for h in dense]],
                k=FUSE_K, weights=(lex_w, DENSE_WEIGHT))  # fmt: skip
    return _one_per_symbol([replace(by_id[cid], score=score) for cid, score in fused])


def relevant(hits: list[ArchivalHit]) -> list[ArchivalHit]:
    """Lexical hits scoring at least half the best one's BM25 x coverage (pure).

    A question shares its generic words with many chunks and its rare ones with few; hits
    matching only the generic words are distractors (measured on `bench needle`, where a 135M
    model answered with a neighbouring fact's number).
    """
    if not hits:
        return hits
    best = max(h.score for h in hits)
    return [h for h in hits if best <= 0 or h.score >= best * 0.5]
