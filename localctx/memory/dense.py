"""Dense code search: one vector per chunk from an embedding model, exact cosine search, and
reciprocal-rank fusion with the lexical ranking.

Why: most questions people ask about a codebase share no word with the code that answers them
("which status is used when visitors leave off the final '/'" -> `strict_slashes`, 308). BM25
cannot bridge that; a sentence-embedding model (all-MiniLM-L6-v2, run by llama.cpp) can, in
part. The two rankings are fused by reciprocal rank (Cormack et al. 2009), which needs no
calibration between BM25 scores and cosines.

What is embedded: `path · symbol` and the chunk's text, cut by the embedder at 256 word pieces;
a chunk longer than that (45% of werkzeug's: code runs ~3.2 characters a word piece, a chunk up
to 400 of the chat model's tokens) gets a second vector for its tail (`tail_text`), and a chunk
is as near a query as the nearer of its two. A vector is keyed by the hash of exactly the text
embedded and the model's id, so an unchanged chunk is never embedded twice, whatever happens
to its file's rows. The pass is resumable: vectors are
committed in batches, so a kill -9 loses at most one batch.

Search is exact: a (chunks x 384) float32 matrix times the query vector; 67,786 Django chunks
take ~8 ms for the product and 100 MiB of RAM (float16 on disk: 768 bytes a chunk).
Must not: import llama_cpp (the caller passes an `embed` function) or the TUI.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

EMBED_TOKENS = 256  # word pieces embedded per chunk (the model's own sentence length)
EMBED_MODEL_ID = f"all-MiniLM-L6-v2/f16/{EMBED_TOKENS}"  # the vectors' key: model and length
RRF_K = 60  # the fusion constant of Cormack et al.; 30-100 moved span recall by <3 points
BATCH = 32  # chunks per embed call and per committed transaction

Embed = Callable[[Sequence[str]], np.ndarray]
Progress = Callable[[int, int], None]  # (chunks embedded, chunks to embed)


def embed_view(path: str, symbol: str, text: str) -> str:
    """The text a chunk is embedded as: where it is, what it is, then the code."""
    head = f"{path} · {symbol}" if symbol else path
    return f"{head}\n{text}"


HEAD_CHARS = 800  # what 256 word pieces hold of code (3.2 characters each, median)


def tail_text(text: str) -> str:
    """The part of a chunk its head vector never sees: whole lines from ~90% of HEAD_CHARS
    on (a little overlap), or "" when the chunk fits in one vector."""
    if len(text) <= HEAD_CHARS * 1.15:
        return ""
    at = text.find("\n", int(HEAD_CHARS * 0.9))
    return text[at + 1 :] if 0 <= at < len(text) - 1 else ""


def tail_key(path: str, symbol: str, text: str) -> str:
    """The tail vector's key, or "" for a chunk with no tail."""
    tail = tail_text(text)
    return dense_key(path, symbol, tail) if tail else ""


def dense_key(path: str, symbol: str, text: str) -> str:
    """The vector's key: a hash of exactly what is embedded."""
    data = embed_view(path, symbol, text).encode("utf-8", "replace")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def to_blob(vec: np.ndarray) -> bytes:
    return np.asarray(vec, dtype=np.float16).tobytes()


def from_blobs(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    flat = np.frombuffer(b"".join(blobs), dtype=np.float16)
    return flat.reshape(len(blobs), dim).astype(np.float32)


def rrf(
    rankings: Iterable[Sequence[int]], k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion of id lists (best first): ids by the sum of w/(k + rank)."""
    scores: dict[int, float] = {}
    for n, ranking in enumerate(rankings):
        w = weights[n] if weights is not None else 1.0
        for rank, ident in enumerate(ranking, 1):
            scores[ident] = scores.get(ident, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


@dataclass
class DenseIndex:
    """The vectors of one repository's chunks, held in memory for exact search."""

    chunk_ids: np.ndarray  # int64, one per row
    matrix: np.ndarray  # float32 (n, dim), rows unit-norm
    missing: int  # chunks of the repository without a vector yet (search ignores them)
    _rows: dict[int, list[int]] | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return int(self.chunk_ids.shape[0])  # vectors: a long chunk has two rows

    def cosines(self, query_vec: np.ndarray, chunk_ids: Sequence[int]) -> list[float]:
        """The query's cosine to each chunk, its best row's (0 for a chunk without one)."""
        if self._rows is None:
            self._rows = {}
            for i, c in enumerate(self.chunk_ids):
                self._rows.setdefault(int(c), []).append(i)
        q = np.asarray(query_vec, dtype=np.float32)
        out = []
        for c in chunk_ids:
            rows = self._rows.get(int(c))
            out.append(float((self.matrix[rows] @ q).max()) if rows else 0.0)
        return out

    def search(self, query_vec: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The `k` chunk ids nearest the query (by their best row), with cosines, best first."""
        if self.size == 0 or k <= 0:
            return []
        sims = self.matrix @ np.asarray(query_vec, dtype=np.float32)
        n = min(2 * k, self.size)  # each chunk has at most two rows: 2k rows hold k chunks
        top = np.argpartition(-sims, n - 1)[:n]
        top = top[np.argsort(-sims[top], kind="stable")]
        out: dict[int, float] = {}
        for i in top:
            out.setdefault(int(self.chunk_ids[i]), float(sims[i]))
        return list(out.items())[:k]


@dataclass(frozen=True)
class DenseReport:
    embedded: int  # chunks embedded this run
    reused: int  # chunks whose vector was there already (same text, any file)
    seconds: float

    @property
    def chunks_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


class DenseStore(Protocol):
    """What the dense pass needs of the archival store (ArchivalStore implements it)."""

    def chunks_without_vectors(self, repo: str, model: str) -> list[tuple[str, str]]: ...

    def vector_count(self, repo: str) -> int: ...

    def put_vectors(self, model: str, rows: Sequence[tuple[str, bytes]]) -> None: ...


def embed_pending(
    store: DenseStore, repo: str, embed: Embed, *, progress: Progress | None = None
) -> DenseReport:
    """Embed every chunk of `repo` that has no vector for this model; resumable."""
    t0 = time.perf_counter()
    todo = store.chunks_without_vectors(repo, EMBED_MODEL_ID)
    total = store.vector_count(repo)
    done = 0
    for i in range(0, len(todo), BATCH):
        batch = todo[i : i + BATCH]
        vecs = embed([view for _, view in batch])
        rows = [(key, to_blob(vec)) for (key, _), vec in zip(batch, vecs, strict=True)]
        store.put_vectors(EMBED_MODEL_ID, rows)
        done += len(batch)
        if progress is not None:
            progress(done, len(todo))
    return DenseReport(done, total - len(todo), time.perf_counter() - t0)
