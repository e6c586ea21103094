"""Walk, chunk and index a repository into archival memory; build the repo digest.

`attach(path)` is what a chat calls: it ingests on first use (incrementally afterwards; an
unchanged repository costs one stat per file) and returns the digest for the pinned region and
the store to recall chunks from. `search_repo` is the one-call search behind
`localctx memory search --repo`. Never imports the TUI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localctx.errors import BadInput
from localctx.ingest.dense_pass import Progress as DenseProgress
from localctx.ingest.dense_pass import open_code_search
from localctx.ingest.digest import DIGEST_TOKENS, build_digest, digest_key
from localctx.ingest.indexer import IngestReport, Progress, ingest_repo, resolve_repo
from localctx.ingest.tokens import TokenCounter
from localctx.ingest.walker import WalkOptions
from localctx.memory.archival import ArchivalHit, ArchivalStore
from localctx.memory.code_search import CodeSearch
from localctx.memory.dense import DenseReport

__all__ = [
    "IngestReport",
    "Progress",
    "RepoContext",
    "WalkOptions",
    "attach",
    "ingest_repo",
    "search_repo",
]


@dataclass
class RepoContext:
    repo: str  # the store key: the resolved root path
    root: Path
    digest: str  # the compact repo map for the pinned region (~1-2K tokens)
    digest_key: str  # stable while the digest text is: key for its KV snapshot
    store: ArchivalStore
    report: IngestReport
    code: CodeSearch | None = None  # the ranking recall uses (lexical + dense when it can)
    dense: DenseReport | None = None  # the dense pass of this attach, if one ran
    notices: list[str] = field(default_factory=list)
    _embedder: Any = None

    def search(self, query: str, k: int = 5) -> list[ArchivalHit]:
        return self._code().search(query, k)

    def recall(self, query: str, k: int = 5) -> list[ArchivalHit]:
        """What recall puts before a question: the best hits that clear the floors."""
        return self._code().recall(query, k)

    def _code(self) -> CodeSearch:
        if self.code is None:
            self.code = CodeSearch(self.store, self.repo)
        return self.code

    def close(self) -> None:
        """Release the embedder, then the store (idempotent)."""
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None
        self.store.close()


def attach(
    repo_path: Path | str,
    *,
    token_counter: TokenCounter | None = None,
    store: ArchivalStore | None = None,
    digest_tokens: int = DIGEST_TOKENS,
    dense: str = "auto",
    dense_progress: DenseProgress | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> RepoContext:
    """Bring the index of `repo_path` up to date and return what a chat needs from it.

    With `token_counter` (the loaded model's tokenizer) the digest is guaranteed to fit
    `digest_tokens` real tokens; it is rebuilt with that counter only when the stored one
    (sized with the calibrated estimate) does not fit, so it stays stable between chats.
    `dense` ("auto", "on", "off") decides the dense pass (ingest.dense_pass);
    `on_progress` hears each file the ingest walks (the chat's status line shows it). The
    caller owns the returned context: `close()` it when the chat ends.
    """
    store = store or ArchivalStore.open()
    report = ingest_repo(repo_path, store, digest_tokens=digest_tokens, on_progress=on_progress)
    record = store.repo(report.repo)
    assert record is not None
    digest, key = record.digest, record.digest_key
    if token_counter is not None and token_counter(digest) > digest_tokens:
        digest = build_digest(store, report.repo, digest_tokens, token_counter)
        key = digest_key(digest)
    outcome = open_code_search(store, report.repo, dense=dense, progress=dense_progress)
    return RepoContext(
        report.repo, Path(report.repo), digest, key, store, report,
        outcome.search, outcome.report, outcome.notices, outcome.embedder,
    )  # fmt: skip


def search_repo(repo_path: Path | str, query: str, k: int = 5) -> list[ArchivalHit]:
    """Ranked chunks of an already-ingested repository (no ingest, no writes)."""
    repo = str(resolve_repo(repo_path))
    with ArchivalStore.open() as store:
        if store.repo(repo) is None:
            raise BadInput(f"{repo} is not ingested yet: run `localctx ingest {repo}` first")
        outcome = open_code_search(store, repo, embed_missing=False)
        try:
            return outcome.search.search(query, k)
        finally:
            if outcome.embedder is not None:
                outcome.embedder.close()  # type: ignore[attr-defined]
