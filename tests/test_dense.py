"""Dense code search: fusion and the index (pure), the dense pass and search with the real
embedding model (all-MiniLM-L6-v2 through llama.cpp), and its failure paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from localctx.ingest import attach, ingest_repo
from localctx.ingest.dense_pass import open_code_search
from localctx.memory.archival import ArchivalStore
from localctx.memory.dense import (
    EMBED_MODEL_ID,
    HEAD_CHARS,
    DenseIndex,
    dense_key,
    embed_view,
    rrf,
    tail_key,
    tail_text,
)

# A repository where the answer shares no word with the question: only meaning links them.
FILES = {
    "bank/settle.py": '''
def reconcile_ledgers(entries):
    """Match each payment against its invoice and flag the ones whose totals disagree."""
    flagged = []
    for entry in entries:
        if entry.paid != entry.invoiced:
            flagged.append(entry)
    return flagged
''',
    "bank/report.py": '''
def render_statement(account):
    """Print a monthly statement: opening balance, every transaction, closing balance."""
    lines = [f"Opening {account.opening}"]
    lines += [f"{t.date} {t.amount}" for t in account.transactions]
    return "\\n".join(lines)
''',
    "web/upload.py": '''
def store_avatar(image_bytes, user):
    """Resize a profile picture to 128 pixels and write it to the media folder."""
    thumb = shrink(image_bytes, 128)
    save(f"media/{user.id}.png", thumb)
''',
}


def make_repo(root: Path) -> Path:
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip())
    return root


def test_rrf_adds_reciprocal_ranks_with_weights() -> None:
    fused = dict(rrf([[1, 2, 3], [3, 1]], k=60))
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert [i for i, _ in rrf([[1, 2], [2, 1]], weights=(1.0, 2.0))] == [2, 1]


def test_dense_index_is_exact_and_ordered() -> None:
    rng = np.random.default_rng(0)
    m = rng.normal(size=(50, 8)).astype(np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    index = DenseIndex(np.arange(100, 150, dtype=np.int64), m, missing=0)
    q = m[7]
    top = index.search(q, 5)
    assert top[0] == (107, pytest.approx(1.0, abs=1e-5))
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    assert index.cosines(q, [107, 999]) == [pytest.approx(1.0, abs=1e-5), 0.0]
    assert DenseIndex(np.zeros(0, np.int64), np.zeros((0, 8), np.float32), 0).search(q, 3) == []


def test_a_chunk_with_two_rows_counts_once_at_its_best_row() -> None:
    m = np.eye(4, dtype=np.float32)
    index = DenseIndex(np.array([7, 8, 7, 9], dtype=np.int64), m, missing=0)  # 7: head, tail
    q = np.array([0.1, 0.2, 0.9, 0.3], dtype=np.float32)
    assert index.search(q, 3) == [(7, pytest.approx(0.9)), (9, pytest.approx(0.3)),
                                  (8, pytest.approx(0.2))]  # fmt: skip
    assert index.cosines(q, [7, 8, 5]) == [pytest.approx(0.9), pytest.approx(0.2), 0.0]


def test_a_long_chunk_has_a_tail_the_head_vector_cannot_see() -> None:
    short = "def f():\n    return 1\n"
    assert tail_text(short) == "" and tail_key("a.py", "f", short) == ""
    long = "".join(f"    value_{i} = compute({i})\n" for i in range(60))
    tail = tail_text(long)
    assert tail and long.endswith(tail) and tail.startswith("    value_")  # whole lines
    assert len(long) - len(tail) < HEAD_CHARS  # overlaps what the head vector reads
    assert tail_key("a.py", "f", long) == dense_key("a.py", "f", tail)


def test_the_key_is_the_text_embedded() -> None:
    assert dense_key("a.py", "f", "x") == dense_key("a.py", "f", "x")
    assert dense_key("a.py", "f", "x") != dense_key("b.py", "f", "x")
    assert embed_view("a.py", "Cls.m", "body").startswith("a.py · Cls.m\n")


@pytest.mark.real
def test_dense_search_finds_what_words_cannot(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    with ArchivalStore.open(tmp_path / "a.sqlite3") as store:
        report = ingest_repo(root, store)
        outcome = open_code_search(store, report.repo, dense="on", threads=1)
        try:
            assert outcome.report is not None and outcome.report.embedded == report.chunks
            code = outcome.search
            assert code.has_dense and code.dense is not None and code.dense.missing == 0
            question = "Where do we check that money received equals what was billed?"
            assert not code.search(question, 1, "lexical") or (
                code.search(question, 1, "lexical")[0].path != "bank/settle.py"
            )  # no shared word: BM25 cannot find it ...
            assert code.search(question, 1, "dense")[0].path == "bank/settle.py"  # meaning can
            assert code.search(question, 1)[0].path == "bank/settle.py"  # and so does fusion
            assert code.recall("What is the capital of France?", 3) == []  # below the floor
        finally:
            outcome.embedder.close()  # type: ignore[union-attr]
        # Unchanged chunks are never embedded twice, and an interrupted pass resumes.
        again = open_code_search(store, report.repo, dense="on", threads=1)
        assert again.report is None and again.search.has_dense
        again.embedder.close()  # type: ignore[union-attr]


@pytest.mark.real
def test_what_a_long_function_says_at_its_end_is_found_by_meaning(tmp_path: Path) -> None:
    words = ["header", "border", "padding", "margin", "title", "caption"]
    lines = [f"    frame.{a}_{b} = measure_text(frame.{a}, frame.{b})\n" for a in words
             for b in words[:3]]  # fmt: skip
    root = make_repo(tmp_path / "repo")
    (root / "bank/layout.py").write_text(
        "def draw_table(frame):\n" + "".join(lines[:15])
        + "    # finally compare every payment received with its invoice, flag mismatched totals\n"
        + "".join(lines[15:17]) + "    return frame\n"
    )  # fmt: skip
    with ArchivalStore.open(tmp_path / "a.sqlite3") as store:
        report = ingest_repo(root, store)
        outcome = open_code_search(store, report.repo, dense="on", threads=1)
        try:
            code = outcome.search
            assert report.chunks == 4  # one per function: the long one fits a chunk
            assert code.dense is not None and code.dense.size == 5  # and has a tail vector
            assert store.vector_count(report.repo) == 5
            assert outcome.report is not None and outcome.report.embedded == 5
            question = "Where is money received checked against what was billed?"
            hit = next(h for h in code.search(question, 4, "dense") if h.path == "bank/layout.py")
            rows = [i for i, c in enumerate(code.dense.chunk_ids) if c == hit.chunk_id]
            q = code._vector(question)
            head, tail = (float(code.dense.matrix[r] @ q) for r in rows)
            assert tail > head  # the sentence is in the part the head vector never read
            assert code.dense.cosines(q, [hit.chunk_id]) == [pytest.approx(tail)]
        finally:
            outcome.embedder.close()  # type: ignore[union-attr]


@pytest.mark.real
def test_an_interrupted_dense_pass_keeps_its_batches_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import localctx.memory.dense as dense

    monkeypatch.setattr(dense, "BATCH", 1)  # one chunk per committed batch
    root = make_repo(tmp_path / "repo")

    def stop_after_first(done: int, total: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with ArchivalStore.open(tmp_path / "a.sqlite3") as store:
        report = ingest_repo(root, store)
        with pytest.raises(KeyboardInterrupt):
            open_code_search(store, report.repo, dense="on", progress=stop_after_first)
        left = store.chunks_without_vectors(report.repo, EMBED_MODEL_ID)
        assert len(left) == report.chunks - 1  # the first batch was committed
        resumed = open_code_search(store, report.repo, dense="on", threads=1)
        assert resumed.report is not None and resumed.report.embedded == report.chunks - 1
        assert resumed.report.reused == 1
        resumed.embedder.close()  # type: ignore[union-attr]


@pytest.mark.real
def test_ask_over_a_repo_inserts_the_meaning_match(tmp_path: Path) -> None:
    """attach() runs the dense pass for a small repository (auto), and recall uses it."""
    root = make_repo(tmp_path / "repo")
    ctx = attach(root, store=ArchivalStore.open(tmp_path / "a.sqlite3"))
    try:
        assert ctx.dense is not None and ctx.dense.embedded == ctx.report.chunks
        hits = ctx.recall("How are profile photos made smaller before saving?", 3)
        assert hits and hits[0].path == "web/upload.py"
    finally:
        ctx.close()


def test_without_the_embedding_model_search_is_lexical_with_a_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALCTX_MODELS", str(tmp_path / "no-models"))
    root = make_repo(tmp_path / "repo")
    with ArchivalStore.open(tmp_path / "a.sqlite3") as store:
        report = ingest_repo(root, store)
        auto = open_code_search(store, report.repo, dense="auto")
        assert not auto.search.has_dense and auto.notices == []  # auto: silently lexical
        on = open_code_search(store, report.repo, dense="on")
        assert not on.search.has_dense and "models pull all-minilm-l6-v2" in on.notices[0]
        assert on.search.search("statement balance", 1)[0].path == "bank/report.py"


def test_a_corrupt_embedding_model_is_one_notice_and_lexical_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from localctx.models.catalogue import Catalogue

    models = tmp_path / "models"
    models.mkdir()
    entry = Catalogue.load().embedding
    assert entry is not None
    (models / entry.file).write_bytes(b"GGUF" + b"\0" * 64)
    monkeypatch.setenv("LOCALCTX_MODELS", str(models))
    root = make_repo(tmp_path / "repo")
    with ArchivalStore.open(tmp_path / "a.sqlite3") as store:
        report = ingest_repo(root, store)
        outcome = open_code_search(store, report.repo, dense="on")
        assert not outcome.search.has_dense and outcome.embedder is None
        assert len(outcome.notices) == 1 and "lexical" in outcome.notices[0]
        assert store.chunks_without_vectors(report.repo, EMBED_MODEL_ID)  # nothing written
