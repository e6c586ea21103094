"""Walk, chunk and index a repository into archival memory; build the repo digest.

`attach(path)` is what a chat calls: it ingests on first use (incrementally afterwards; an
unchanged repository costs one stat per file) and returns the digest for the pinned region and
the store to recall chunks from. `search_repo` is the one-call search behind
`localctx memory search --repo`. Never imports the TUI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localctx.errors import BadInput
from localctx.ingest.digest import DIGEST_TOKENS, build_digest, digest_key
from localctx.ingest.indexer import IngestReport, Progress, ingest_repo, resolve_repo
from localctx.ingest.tokens import TokenCounter
from localctx.ingest.walker import WalkOptions
from localctx.memory.archival import ArchivalHit, ArchivalStore

__all__ = [
    "IngestReport",
    "Progress",
    "RepoContext",
    "WalkOptions",
    "attach",
    "ingest_repo",
    "search_repo",
]


@dataclass(frozen=True)
class RepoContext:
    repo: str  # the store key: the resolved root path
    root: Path
    digest: str  # the compact repo map for the pinned region (~1-2K tokens)
    digest_key: str  # stable while the digest text is: key for its KV snapshot
    store: ArchivalStore
    report: IngestReport

    def search(self, query: str, k: int = 5) -> list[ArchivalHit]:
        return self.store.search(query, k, repo=self.repo)


def attach(
    repo_path: Path | str,
    *,
    token_counter: TokenCounter | None = None,
    store: ArchivalStore | None = None,
    digest_tokens: int = DIGEST_TOKENS,
    on_progress: Callable[[Progress], None] | None = None,
) -> RepoContext:
    """Bring the index of `repo_path` up to date and return what a chat needs from it.

    With `token_counter` (the loaded model's tokenizer) the digest is guaranteed to fit
    `digest_tokens` real tokens; it is rebuilt with that counter only when the stored one
    (sized with the calibrated estimate) does not fit, so it stays stable between chats.
    The caller owns the returned store (close it when the chat ends); `on_progress` hears
    each file the ingest walks (the chat's status line shows it).
    """
    store = store or ArchivalStore.open()
    report = ingest_repo(repo_path, store, digest_tokens=digest_tokens, on_progress=on_progress)
    record = store.repo(report.repo)
    assert record is not None
    digest, key = record.digest, record.digest_key
    if token_counter is not None and token_counter(digest) > digest_tokens:
        digest = build_digest(store, report.repo, digest_tokens, token_counter)
        key = digest_key(digest)
    return RepoContext(report.repo, Path(report.repo), digest, key, store, report)


def search_repo(repo_path: Path | str, query: str, k: int = 5) -> list[ArchivalHit]:
    """Ranked chunks of an already-ingested repository (no ingest, no writes)."""
    repo = str(resolve_repo(repo_path))
    with ArchivalStore.open() as store:
        if store.repo(repo) is None:
            raise BadInput(f"{repo} is not ingested yet: run `localctx ingest {repo}` first")
        return store.search(query, k, repo=repo)
