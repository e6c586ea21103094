"""The dense pass of ingest: embed a repository's chunks, then open its code search.

Runs after the lexical pass, with the catalogue's embedding model (all-MiniLM-L6-v2, run by
llama.cpp). `dense` is a choice: "on", "off", or "auto" — on when the model is installed and
the repository needs at most DENSE_AUTO_CHUNKS new vectors (or has its vectors already), so a
first `ask` over a small repository pays for the pass once and a large one is never held up
for long: `localctx ingest --dense` embeds it on purpose, with its own progress bar.

A missing or broken embedding model is never fatal: search falls back to lexical with one
notice. Must not: import llama_cpp (engine.embed does) or the TUI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from localctx.errors import LocalctxError
from localctx.memory.archival import ArchivalStore
from localctx.memory.code_search import CodeSearch
from localctx.memory.dense import EMBED_MODEL_ID, EMBED_TOKENS, DenseReport, embed_pending

# Missing vectors (heads and tails of chunks): ~3 min of embedding on 2 cores (~16/s), seconds
# on a GPU.
DENSE_AUTO_CHUNKS = 3000
DENSE_MODES = ("auto", "on", "off")

Progress = Callable[[int, int], None]


@dataclass
class DenseOutcome:
    search: CodeSearch
    report: DenseReport | None = None  # None: no pass ran
    notices: list[str] = field(default_factory=list)
    embedder: object | None = None  # the Embedder, owned by the caller (close it)


def open_code_search(
    store: ArchivalStore,
    repo: str,
    *,
    dense: str = "auto",
    progress: Progress | None = None,
    threads: int | None = None,
    embed_missing: bool = True,
) -> DenseOutcome:
    """Bring the repository's vectors up to date (per `dense`) and return its code search;
    with `embed_missing` False only the vectors already stored are used (no writes)."""
    if dense not in DENSE_MODES:
        raise ValueError(f"dense must be one of {DENSE_MODES}, got {dense!r}")
    lexical = CodeSearch(store, repo)
    if dense == "off":
        return DenseOutcome(lexical)
    from localctx.models.catalogue import Catalogue

    entry = Catalogue.load().embedding
    if entry is None or not entry.installed:
        notice = "dense search needs: localctx models pull all-minilm-l6-v2"
        return DenseOutcome(lexical, notices=[] if dense == "auto" else [notice])
    todo = len(store.chunks_without_vectors(repo, EMBED_MODEL_ID)) if embed_missing else 0
    if dense == "auto" and todo > DENSE_AUTO_CHUNKS:
        return DenseOutcome(
            lexical,
            notices=[
                f"{todo:,} chunks have no vectors yet (more than {DENSE_AUTO_CHUNKS:,}):"
                " search is lexical; `localctx ingest --dense` embeds them"
            ],
        )
    try:
        from localctx.engine.embed import Embedder

        embedder = Embedder.load(entry.path, n_threads=threads, n_ctx=EMBED_TOKENS)
    except LocalctxError as exc:
        return DenseOutcome(lexical, notices=[f"dense search is off ({exc}); search is lexical"])
    try:
        report = embed_pending(store, repo, embedder.embed, progress=progress) if todo else None
        index = store.load_dense(repo, EMBED_MODEL_ID, embedder.dim)
    except BaseException:
        embedder.close()
        raise

    def embed_query(query: str) -> object:
        return embedder.embed([query])[0]

    search = CodeSearch(store, repo, index, embed_query)  # type: ignore[arg-type]
    return DenseOutcome(search, report, embedder=embedder)
