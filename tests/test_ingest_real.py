"""Against real things: the default model's tokenizer and a real repository (rich, from PyPI)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from localctx.bench.qaset import fetch_sdist, load_qa
from localctx.bench.retrieval import evaluate
from localctx.ingest import attach, ingest_repo
from localctx.ingest.windows import DEFAULT_CHUNK_TOKENS
from localctx.memory.archival import ArchivalStore

DATA = Path(__file__).parent / "data"
PLANTED = '''
def reconcile_ledger_drift(entries, tolerance=0.01):
    """Quarantine the ledger entries whose running balance drifts past the tolerance.

    The overnight settlement job calls this before posting to the general ledger.
    """
    drifted = []
    balance = 0.0
    for entry in entries:
        balance += entry.amount
        if abs(balance - entry.expected_balance) > tolerance:
            drifted.append(entry)
    return drifted
'''


@pytest.mark.real
def test_planted_function_is_found_and_chunks_fit_real_tokens(tmp_path: Path, smollm) -> None:
    root = tmp_path / "bank"
    (root / "ledger").mkdir(parents=True)
    (root / "ledger" / "settle.py").write_text(PLANTED)
    for i in range(30):  # decoys that share words with the question
        (root / "ledger" / f"report_{i}.py").write_text(
            f'def ledger_report_{i}(entries):\n    """Print ledger entries, page {i}."""\n'
            "    for entry in entries:\n        print(entry)\n"
        )
    (root / "README.md").write_text("# Bank\n\nA ledger and its settlement job.\n")

    def count(text: str) -> int:
        return len(smollm.tokenize(text))

    ctx = attach(root, token_counter=count)
    try:
        hits = ctx.search("which function quarantines entries whose balance drifts?", k=5)
        assert (hits[0].path, hits[0].symbol) == ("ledger/settle.py", "reconcile_ledger_drift")
        assert "overnight settlement job" in hits[0].text
        assert (hits[0].start_line, hits[0].end_line) == (2, 13)
        assert count(ctx.digest) <= 1500 and "reconcile_ledger_drift" in ctx.digest
        for hit in ctx.search("ledger entries", k=50):
            assert count(hit.text) <= DEFAULT_CHUNK_TOKENS  # the estimate keeps chunks in budget
    finally:
        ctx.store.close()


@pytest.fixture(scope="session")
def rich_sdist(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    qa = json.loads((DATA / "qa_rich.json").read_text())
    config_cache = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    cache = (
        Path(config_cache.mkdir("localctx-sdists"))
        if config_cache is not None
        else tmp_path_factory.mktemp("localctx-sdists")
    )
    try:
        return fetch_sdist(qa["sdist"], qa["version"], cache)
    except (subprocess.CalledProcessError, StopIteration):
        pytest.skip("PyPI unreachable: cannot fetch the rich sdist for the QA set")


def test_codebase_qa_recall_at_5_on_rich(rich_sdist: Path, tmp_path: Path) -> None:
    with ArchivalStore.open(tmp_path / "archival.sqlite3") as store:
        report = ingest_repo(rich_sdist, store)
        assert report.files_indexed >= 80 and report.skipped.get("binary", 0) == 0
        qa = load_qa(DATA / "qa_rich.json")
        result = evaluate(qa, lambda q, k: store.search(q, k, repo=report.repo))
    assert result.questions >= 20
    assert result.span["5"] >= 0.9, result.misses


@pytest.mark.real
@pytest.mark.slow
def test_ask_repo_recalls_the_planted_docstring(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from localctx.cli import main

    root = tmp_path / "bank"
    (root / "ledger").mkdir(parents=True)
    (root / "ledger" / "settle.py").write_text(PLANTED)
    for i in range(3):
        (root / "ledger" / f"report_{i}.py").write_text(
            f'def ledger_report_{i}(entries):\n    """Print ledger entries, page {i}."""\n'
        )
    question = "Which function quarantines ledger entries whose running balance drifts?"
    result = CliRunner().invoke(
        main, ["ask", "--repo", str(root), question, "--json", "--max-tokens", "8"]
    )
    assert result.exit_code == 0, result.output
    recalled = json.loads(result.stdout)["recalled"]
    archival = [item for item in recalled if item["source"] == "archival"]
    assert archival[0]["id"] == "ledger/settle.py:2-13"
    assert "The overnight settlement job calls this" in archival[0]["text"]
