"""`bench retrieval`: does code search put the answering lines in the top k?

A QA set's repository (an sdist from PyPI, or a local path) is ingested into a fresh store in
a temporary directory, then every question is searched the way a chat's recall searches it.
Reported per set: recall@1/5/10 by path and by span (a hit whose path is a target's and whose
lines overlap the target's), the lenient path+symbol recall@5 of the older sets, MRR of the
first answering span, the paraphrased questions on their own, query latency p50/p95 and
ingest seconds. Measured, never asserted.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localctx import paths
from localctx.bench.qaset import QaSet, fetch_sdist, finds, first_rank, load_qa, names
from localctx.ingest import ingest_repo
from localctx.ingest.dense_pass import open_code_search
from localctx.memory.archival import ArchivalHit, ArchivalStore
from localctx.memory.code_search import VARIANTS, CodeSearch

if TYPE_CHECKING:
    from localctx.engine.base import Engine

KS = (1, 5, 10)
Search = Callable[[str, int], Sequence[ArchivalHit]]


@dataclass
class RetrievalResult:
    qa: str
    tuning: bool
    variant: str
    questions: int
    span: dict[str, float]  # "1", "5", "10" -> share of questions
    path: dict[str, float]
    symbol_at_5: float
    mrr: float
    paraphrased: int
    span_paraphrased: dict[str, float]
    query_ms_p50: float
    query_ms_p95: float
    misses: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def evaluate(qa: QaSet, search: Search, variant: str = "default") -> RetrievalResult:
    """Score `search` (query, k) -> ranked hits on every question of `qa`."""
    k_max = max(KS)
    span_hits = {k: 0 for k in KS}
    path_hits = {k: 0 for k in KS}
    para_hits = {k: 0 for k in KS}
    symbol5 = 0
    rr = 0.0
    times: list[float] = []
    misses: list[dict[str, Any]] = []
    for question in qa.questions:
        t0 = time.perf_counter()
        hits = list(search(question.q, k_max))[:k_max]
        times.append((time.perf_counter() - t0) * 1000)
        spans = [(h.path, h.start_line, h.end_line) for h in hits]
        rank = first_rank(spans, question)
        targets = {t.path for t in question.targets}
        path_rank = next((i for i, h in enumerate(hits, 1) if h.path in targets), None)
        for k in KS:
            if rank is not None and rank <= k:
                span_hits[k] += 1
                if question.paraphrased:
                    para_hits[k] += 1
            if path_rank is not None and path_rank <= k:
                path_hits[k] += 1
        if any(
            names(h.path, h.symbol, question) or finds(*s, question)
            for h, s in zip(hits[:5], spans[:5], strict=True)
        ):
            symbol5 += 1
        rr += 1.0 / rank if rank else 0.0
        if rank is None or rank > 5:
            misses.append(
                {
                    "id": question.id,
                    "q": question.q,
                    "want": [f"{t.path}:{t.lines[0]}-{t.lines[1]}" for t in question.targets],
                    "got": [f"{p}:{a}-{b}" for p, a, b in spans[:5]],
                }
            )
    n = max(1, len(qa.questions))
    para = max(1, sum(q.paraphrased for q in qa.questions))
    times.sort()
    return RetrievalResult(
        qa=qa.name,
        tuning=qa.tuning,
        variant=variant,
        questions=len(qa.questions),
        span={str(k): round(span_hits[k] / n, 3) for k in KS},
        path={str(k): round(path_hits[k] / n, 3) for k in KS},
        symbol_at_5=round(symbol5 / n, 3),
        mrr=round(rr / n, 3),
        paraphrased=sum(q.paraphrased for q in qa.questions),
        span_paraphrased={str(k): round(para_hits[k] / para, 3) for k in KS},
        query_ms_p50=round(statistics.median(times), 2) if times else 0.0,
        query_ms_p95=round(times[int(0.95 * (len(times) - 1))], 2) if times else 0.0,
        misses=misses,
    )


def subject_root(qa: QaSet, repo: Path | None = None, cache: Path | None = None) -> Path:
    """The repository a set is about: `repo` if given, else its sdist (fetched once)."""
    if repo is not None:
        return repo
    return fetch_sdist(qa.sdist, qa.version, cache or paths.cache_dir() / "sdists")


def index_path(root: Path) -> Path:
    """The kept index of one subject repository (chunks and vectors), shared with bench qa."""
    return paths.cache_dir() / "bench-index" / f"{root.name}.sqlite3"


def run_retrieval(
    qa_path: Path,
    *,
    repo: Path | None = None,
    variants: Sequence[str] = VARIANTS,
    dense: str = "on",
    threads: int | None = None,
    keep_index: bool = False,
    model: str | None = None,
    expand: bool = False,
    rerank: bool = False,
) -> dict[str, Any]:
    """Ingest the set's repository (lexical, then the dense pass) and evaluate each ranking
    variant; the costs of both passes are reported.

    The store is fresh (a temporary directory) unless `keep_index`: then the index bench qa
    keeps per repository is brought up to date and used, so vectors are embedded once (the
    ingest figures are then an incremental run's). With `expand` every variant is also
    evaluated on the question plus the chat `model`'s guess at the answering code
    (memory.expand, as `ask` searches), the guess written once per question; with `rerank`
    each of those rankings is also re-ranked by the model (memory.rerank).
    """
    qa = load_qa(qa_path)
    root = subject_root(qa, repo)
    with tempfile.TemporaryDirectory(prefix="localctx-retrieval-") as tmp, ExitStack() as stack:
        path = index_path(root) if keep_index else Path(tmp) / "archival.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        store = stack.enter_context(ArchivalStore.open(path))
        report = ingest_repo(root, store)
        outcome = open_code_search(store, report.repo, dense=dense, threads=threads)
        if outcome.embedder is not None:
            stack.callback(outcome.embedder.close)  # type: ignore[attr-defined]
        code = outcome.search
        engine = None
        if expand or rerank:
            from localctx.engine import load_engine
            from localctx.runconfig import run_config

            engine = stack.enter_context(load_engine(run_config(model, threads=threads).settings))
        project = root.name
        guesses: dict[str, str] = {}
        if expand:
            from localctx.memory.expand import expand_query

            assert engine is not None
            guesses = {q.q: expand_query(engine, q.q, project) for q in qa.questions}
        results = []
        for variant in [v for v in variants if code.has_dense or v == "lexical"]:
            for with_guess in (False, True) if expand else (False,):
                for with_rerank in (False, True) if rerank else (False,):
                    label = variant + ("+expand" if with_guess else "")
                    label += "+rerank" if with_rerank else ""
                    search = _searcher(code, variant, guesses if with_guess else None,
                                       engine if with_rerank else None, project)  # fmt: skip
                    results.append(evaluate(qa, search, label).to_json())
        dense_report = outcome.report
        return {
            "qa": qa.name,
            "tuning": qa.tuning,
            "repo": report.repo,
            "files": report.files_indexed,
            "chunks": report.chunks,
            "kept_index": keep_index,
            "ingest_seconds": round(report.seconds, 2),
            "dense_seconds": round(dense_report.seconds, 2) if dense_report else None,
            "dense_chunks_per_second": (
                round(dense_report.chunks_per_second, 1) if dense_report else None
            ),
            "vector_bytes": code.dense.size * 768 if code.dense else 0,
            "model": engine.model_name if engine is not None else None,
            "notices": outcome.notices,
            "results": results,
        }


def _searcher(
    code: CodeSearch,
    variant: str,
    guesses: dict[str, str] | None,
    engine: Engine | None,
    project: str,
) -> Search:
    """One ranking as (query, k) -> hits: the variant, on the question and its guess, and
    re-ranked by the model; the guess's time is not counted (it was written beforehand)."""

    def search(query: str, k: int) -> list[ArchivalHit]:
        guess = guesses.get(query, "") if guesses is not None else ""
        text = f"{query}\n{guess}" if guess else query
        if engine is None:
            return code.search(text, k, variant)
        from localctx.memory.rerank import POOL, rerank

        hits = code.search(text, max(k, POOL), variant)
        return rerank(engine, query, hits, project)[:k]

    return search
