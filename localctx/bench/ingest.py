"""Ingest benchmark: files/s of a first ingest, the re-ingest speedup, and QA recall@5.

The subject is a real repository (an sdist from PyPI, unpacked); the QA set is a JSON file of
questions, each with the file and lines that answer it (tests/data/qa_rich.json). Each
run uses a fresh store in a temporary directory so the first ingest really is the first.
Figures are measured, never asserted: on a shared 2-core machine they move with the load, so
the speedup is a ratio of two runs taken back to back and CPU seconds are reported beside wall.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from localctx.bench.qaset import load_qa
from localctx.bench.retrieval import evaluate
from localctx.engine.base import Engine
from localctx.ingest import ingest_repo
from localctx.memory.archival import ArchivalStore


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def ingest_benchmark(
    repo_path: Path, qa_path: Path | None = None, workers: int | None = None
) -> dict[str, object]:
    """First ingest, unchanged re-ingest and (with a QA set) recall@5, in a fresh store."""
    with tempfile.TemporaryDirectory(prefix="localctx-bench-") as tmp:
        store = ArchivalStore.open(Path(tmp) / "archival.sqlite3")
        try:
            cpu0 = _cpu_seconds()
            first = ingest_repo(repo_path, store, workers=workers)
            cpu_first = _cpu_seconds() - cpu0  # with the worker processes (reaped at the end)
            again = ingest_repo(repo_path, store, workers=workers)
            result: dict[str, object] = {
                "repo": first.repo,
                "files_seen": first.files_seen,
                "files_indexed": first.files_indexed,
                "chunks": first.chunks,
                "bytes": first.bytes,
                "first_seconds": round(first.seconds, 3),
                "files_per_second": round(first.files_per_second, 1),
                "mb_per_second": round(first.bytes / 1e6 / first.seconds, 2),
                "cpu_seconds": round(cpu_first, 3),
                "files_per_cpu_second": round(first.files_seen / max(cpu_first, 1e-6), 1),
                "reingest_seconds": round(again.seconds, 4),
                "reingest_speedup": round(first.seconds / max(again.seconds, 1e-6), 1),
                "reingest_files_indexed": again.files_indexed,
                "digest_tokens": first.digest_tokens,
                "skipped": dict(first.skipped),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
            if qa_path is not None:
                qa = evaluate(load_qa(qa_path), lambda q, k: store.search(q, k, repo=first.repo))
                result.update(
                    qa_questions=qa.questions,
                    recall_at_5=qa.span["5"],
                    symbol_recall_at_5=qa.symbol_at_5,
                    qa_misses=qa.misses,
                )
            return result
        finally:
            store.close()


def digest_prefill_vs_restore(engine: Engine, digest: str, repeats: int = 3) -> dict[str, float]:
    """Time-to-first-token cost of the pinned digest: prefilled vs restored from its KV state.

    Prefill decodes the digest (as a system message, the way a chat pins it); restore sets the
    saved sequence state back. Best of `repeats` each, in seconds.
    """
    prompt = engine.format_chat([{"role": "system", "content": digest}])
    tokens = engine.tokenize(prompt, add_special=True)
    prefill, restore = [], []
    state = b""
    for _ in range(repeats):
        engine.kv_remove(0, -1)
        t0 = time.perf_counter()
        engine.decode(tokens)
        prefill.append(time.perf_counter() - t0)
        state = engine.state_get()
        engine.kv_remove(0, -1)
        t0 = time.perf_counter()
        engine.state_set(state, tokens)
        restore.append(time.perf_counter() - t0)
    return {
        "digest_tokens": len(tokens),
        "prefill_seconds": round(min(prefill), 4),
        "restore_seconds": round(min(restore), 4),
        "state_bytes": len(state),
        "ttft_saved_seconds": round(min(prefill) - min(restore), 4),
    }


def synthetic_tree(root: Path, n_files: int, *, seed: int = 0) -> Path:
    """A tree of `n_files` small Python files in nested packages (100 per directory), for the
    walk-and-memory figure (100,000 files: ~58 s, ~133 MiB peak). Deterministic per seed."""
    import random

    rng = random.Random(seed)
    words = ("alpha", "beta", "gamma", "delta", "omega", "ledger", "cache", "window", "token")
    for i in range(n_files):
        pkg = root / f"pkg{i // 10000:02d}" / f"mod{(i // 100) % 100:02d}"
        pkg.mkdir(parents=True, exist_ok=True)
        name = f"{rng.choice(words)}_{i}"
        body = (
            f'"""Module {i}: {rng.choice(words)} helpers."""\n\n\n'
            f"def {name}(x):\n    return x * {i % 97}\n\n\n"
            f"class {name.title().replace('_', '')}:\n    size = {i}\n"
        )
        (pkg / f"m{i}.py").write_text(body, encoding="utf-8")
    return root


def digest_figure(repo_path: Path, model_path: Path, threads: int | None = None) -> dict[str, Any]:
    """The digest of `repo_path` (ingested into a fresh store) prefilled vs restored with
    the given model: the README's time-to-first-token saving of the pinned repository map."""
    from localctx.bench.settings import bench_settings
    from localctx.engine import load_engine

    with tempfile.TemporaryDirectory(prefix="localctx-bench-") as tmp:
        store = ArchivalStore.open(Path(tmp) / "archival.sqlite3")
        try:
            report = ingest_repo(repo_path, store)
            record = store.repo(report.repo)
            digest = record.digest if record else ""
        finally:
            store.close()
    settings = bench_settings(model_path=model_path, n_ctx=4096, n_threads=threads)
    with load_engine(settings) as engine:
        return digest_prefill_vs_restore(engine, digest)
