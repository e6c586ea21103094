"""`bench retrieval` end to end on a small repository, the prose column of the lexical index
(and its migration), and re-ranking with a real chat model."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from localctx.cli import main
from localctx.engine import EngineSettings, load_engine
from localctx.ingest import ingest_repo
from localctx.memory import archival
from localctx.memory.archival import ArchivalHit, ArchivalStore
from localctx.memory.archival_query import prose_of
from localctx.memory.rerank import RERANK_HIT, RERANK_QUESTION, relevance_scores, rerank

FILES = {
    "pkg/retry.py": '''
def backoff_delay(attempt):
    """How long to wait before trying again: doubles every time, never above a minute."""
    return min(60, 2 ** attempt)
''',
    "pkg/names.py": """
def slugify(title):
    # lower-case words joined by dashes, for addresses
    return "-".join(title.lower().split())
""",
    "pkg/money.py": """
def add_tax(amount, rate):
    return round(amount * (1 + rate), 2)
""",
}


def make_repo(root: Path) -> Path:
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip())
    return root


def make_qa(path: Path) -> Path:
    questions = [
        {"id": "t-1", "q": "How long does it wait before trying again?", "paraphrased": True,
         "targets": [{"path": "pkg/retry.py", "symbol": "backoff_delay", "lines": [1, 3]}]},
        {"id": "t-2", "q": "What does slugify do to a title?",
         "targets": [{"path": "pkg/names.py", "symbol": "slugify", "lines": [1, 3]}]},
    ]  # fmt: skip
    meta = {"subject": "a test repository", "sdist": "none", "version": "0", "tuning": False}
    path.write_text(json.dumps({**meta, "questions": questions}))
    return path


def test_prose_is_docstrings_and_comments() -> None:
    text = 'def f():\n    """Wait a while."""\n    x = "#no"  # then retry\n    # give up\n'
    assert prose_of(text) == "Wait a while. then retry give up"
    assert prose_of("x = 1\n") == ""


def test_the_v4_migration_keeps_every_row_and_fills_prose(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    # A store as v3 left it: chunks_fts without the prose column.
    with ArchivalStore.open(path) as store:
        ingest_repo(make_repo(tmp_path / "repo"), store)
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT rowid, path, symbol, body, terms FROM chunks_fts").fetchall()
    conn.execute("DROP TABLE chunks_fts")
    conn.execute(
        "CREATE VIRTUAL TABLE chunks_fts USING fts5 (path, symbol, body, terms,"
        " tokenize = 'porter unicode61')"
    )
    conn.executemany("INSERT INTO chunks_fts (rowid, path, symbol, body, terms) VALUES "
                     "(?, ?, ?, ?, ?)", rows)  # fmt: skip
    conn.execute("DELETE FROM _migrations WHERE name = 'archival_v4_prose_column'")
    conn.commit()
    conn.close()
    with ArchivalStore.open(path) as store:  # migrates
        hits = store.search("wait before trying again", 3)
        assert hits and hits[0].path == "pkg/retry.py"
    conn = sqlite3.connect(path)
    after = conn.execute("SELECT rowid, path, symbol, body, terms, prose FROM chunks_fts")
    by_id = {r[0]: r for r in after}
    assert sorted(by_id) == sorted(r[0] for r in rows)
    for rowid, *cols in rows:
        assert list(by_id[rowid][1:5]) == cols
        assert by_id[rowid][5] == prose_of(cols[2])
    conn.close()


def test_prose_weight_lifts_a_word_said_in_a_docstring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "repo"
    make_repo(root)
    (root / "pkg/poll.py").write_text("def poll(x):\n    return x.wait()\n")  # code only
    with ArchivalStore.open(tmp_path / "a.sqlite3") as store:
        ingest_repo(root, store)
        monkeypatch.setattr(archival, "WEIGHTS", (*archival.WEIGHTS[:4], 0.0))
        flat = [h.path for h in store.search("wait", 2)]
        monkeypatch.setattr(archival, "WEIGHTS", (*archival.WEIGHTS[:4], 8.0))
        weighted = [h.path for h in store.search("wait", 2)]
    assert flat[0] == "pkg/poll.py"  # the shorter chunk, by BM25 on the body alone
    assert weighted[0] == "pkg/retry.py"  # the docstring's word, by the prose column


def test_bench_retrieval_cli_reports_span_recall(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    qa = make_qa(tmp_path / "qa.json")
    args = ["bench", "retrieval", "--qa", str(qa), "--repo", str(root), "--dense", "off"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.output)["sets"]
    assert report["chunks"] == 3 and report["kept_index"] is False
    (lexical,) = report["results"]
    assert lexical["variant"] == "lexical" and lexical["questions"] == 2
    assert lexical["span"]["5"] == 1.0 and lexical["paraphrased"] == 1
    text = CliRunner().invoke(main, args)
    assert text.exit_code == 0 and "span@1" in text.output


def test_bench_retrieval_refuses_an_unknown_variant_in_one_line(tmp_path: Path) -> None:
    qa = make_qa(tmp_path / "qa.json")
    result = CliRunner().invoke(main, ["bench", "retrieval", "--qa", str(qa), "--variant", "magic"])
    assert result.exit_code != 0
    assert "unknown --variant 'magic'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def _hits() -> list[ArchivalHit]:
    return [
        ArchivalHit("r", rel, 1, 3, rel.split("/")[1][:-3], "python", text.lstrip(), 0.0, i)
        for i, (rel, text) in enumerate(FILES.items(), 1)
    ]


@pytest.mark.real
def test_rerank_reuses_the_question_prefix_and_keeps_every_hit(smollm_path: Path) -> None:
    hits = _hits()
    question = "How long does it wait before trying again?"
    with load_engine(EngineSettings(model_path=smollm_path, n_ctx=1024, n_threads=1)) as engine:
        seen: list[list[int]] = []
        read = engine.last_logits

        def spy() -> np.ndarray:
            seen.append(list(engine.tokens))  # what the cache holds when a hit is scored
            return read()

        engine.last_logits = spy  # type: ignore[method-assign]
        together = relevance_scores(engine, question, hits, "pkg")
        engine.last_logits = read  # type: ignore[method-assign]
        assert engine.n_past == 0  # the cache is left empty
        alone = [relevance_scores(engine, question, [h], "pkg")[0] for h in hits]
        ranked = rerank(engine, question, hits, "pkg")
        # Each hit is scored on exactly its own prompt: no token of the previous hit is left.
        for hit, held in zip(hits, seen, strict=True):
            assert held == engine.tokenize(engine.format_chat([{"role": "user", "content": (
                RERANK_QUESTION.format(project="pkg", question=question)
                + RERANK_HIT.format(where=f"{hit.path}, {hit.symbol}", snippet=hit.text.strip())
            )}]), add_special=True)  # fmt: skip
    assert all(np.isfinite(together))
    # Only the tail is decoded after the shared head: the same tokens in other batch splits,
    # which moves a 4-bit model's log-odds by up to ~0.2 (measured), never the prompt.
    assert np.allclose(together, alone, atol=0.5)
    assert sorted(h.chunk_id for h in ranked) == [h.chunk_id for h in hits]
