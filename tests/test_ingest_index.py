"""Indexing a repository: incremental re-ingest, deletions, secrets, kill -9, digest, CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from localctx.cli import main
from localctx.errors import BadInput, Exit
from localctx.ingest import attach, indexer, ingest_repo, search_repo
from localctx.ingest.digest import rank_symbols, render_digest
from localctx.ingest.tokens import estimate_tokens
from localctx.memory.archival import ArchivalStore
from localctx.memory.db import store_path

FAKE_KEY = "sk-live-FAKE0a1b2c3d4e5f6a7b8c9d"


def _repo(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return _repo(
        tmp_path / "proj",
        {
            "app/core.py": "class Engine:\n    def start(self):\n        return 'vroom'\n",
            "app/util.py": "from app.core import Engine\n\ndef make():\n    return Engine()\n",
            "app/cli.py": "from app.core import Engine\n\ndef main():\n    Engine().start()\n",
            "README.md": "# Proj\n\nStarts the Engine.\n",
            ".env": f"OPENAI_API_KEY={FAKE_KEY}\n",
            ".gitignore": "*.tmp\n",
            "scratch.tmp": "ignored scratch\n",
        },
    )


@pytest.fixture
def store(tmp_path: Path) -> ArchivalStore:
    s = ArchivalStore.open(tmp_path / "archival.sqlite3")
    yield s
    s.close()


def test_first_ingest_then_unchanged_then_incremental(repo: Path, store: ArchivalStore) -> None:
    first = ingest_repo(repo, store)
    assert (first.files_seen, first.files_indexed, first.files_unchanged) == (5, 5, 0)
    assert first.skipped == {"secret": 1, "ignored": 1}
    assert first.chunks == first.chunks_written > 0
    again = ingest_repo(repo, store)
    assert (again.files_indexed, again.files_unchanged, again.chunks_written) == (0, 5, 0)
    assert again.digest_key == first.digest_key  # stable digest for an unchanged repository

    (repo / "app/util.py").write_text("def make_fast():\n    return 'turbo'\n")
    (repo / "app/new.py").write_text("def brand_new_feature():\n    return 1\n")
    (repo / "app/cli.py").unlink()
    os.utime(repo / "README.md", ns=(1, 1))  # new mtime, same bytes: hashed, not re-chunked
    third = ingest_repo(repo, store)
    assert (third.files_indexed, third.files_removed, third.files_unchanged) == (2, 1, 3)
    assert [h.path for h in store.search("brand new feature")] == ["app/new.py"]
    assert store.search("turbo")[0].symbol == "make_fast"
    assert not any(h.path == "app/cli.py" for h in store.search("main Engine start"))
    assert ingest_repo(repo, store).files_unchanged == 5  # README's new mtime was recorded


def test_a_file_that_becomes_ignored_leaves_the_index(repo: Path, store: ArchivalStore) -> None:
    ingest_repo(repo, store)
    assert store.search("vroom")
    (repo / ".gitignore").write_text("*.tmp\napp/core.py\n")
    report = ingest_repo(repo, store)
    assert report.files_removed == 1 and store.search("vroom") == []


def test_a_dotenv_key_is_never_searchable(repo: Path, store: ArchivalStore) -> None:
    ingest_repo(repo, store)
    for query in (FAKE_KEY, "OPENAI_API_KEY", "sk live FAKE0a1b2c3d4e5f6a7b8c9d"):
        assert store.search(query, k=50) == []
    store.close()
    for suffix in ("", "-wal"):
        db = Path(str(store.path) + suffix)
        if db.exists():
            assert FAKE_KEY.encode() not in db.read_bytes()


def test_digest_ranks_by_use_and_fits_the_budget(repo: Path, store: ArchivalStore) -> None:
    report = ingest_repo(repo, store)
    digest = store.repo(report.repo).digest
    assert digest.startswith("Repository proj: 5 files")
    assert "app/core.py: Engine" in digest  # used by two other files
    assert report.digest_tokens == estimate_tokens(digest)
    ranked = rank_symbols(
        [("a.py", "Used", 1), ("a.py", "Lonely", 5), ("a.py", "__init__", 9)],
        [("a.py", {"Used", "Lonely"}), ("b.py", {"Used"}), ("c.py", {"Used"})],
    )
    assert [r.symbol for r in ranked] == ["Used", "Lonely"]  # dunders are not ranked
    many = [r for i in range(400) for r in rank_symbols([(f"m{i}.py", f"name_{i}", 1)], [])]
    small = render_digest("Repository x.", [("m.py", "python")], many, budget=200)
    assert estimate_tokens(small) <= 200 and "name_0" in small


def test_kill_9_mid_batch_then_rerun_has_no_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 100
    root = _repo(tmp_path / "big", {f"pkg/mod_{i:03}.py": (
        f'def func_{i:03}():\n    """Unique marker zq{i:03}x."""\n    return {i}\n'
    ) for i in range(n)})  # fmt: skip
    home = tmp_path / "home"
    child = textwrap.dedent(
        """
        import sys, time
        from localctx.ingest import indexer, ingest_repo
        from localctx.memory import archival
        indexer.BATCH_FILES = 20
        real_put, written = archival.ArchivalStore.put_file, [0]
        def put_then_hang(self, *args, **kwargs):
            real_put(self, *args, **kwargs)
            written[0] += 1
            if written[0] == 50:  # two batches committed, the third half written
                print("mid-batch", flush=True)
                time.sleep(120)
        archival.ArchivalStore.put_file = put_then_hang
        ingest_repo(sys.argv[1], archival.ArchivalStore.open(), workers=1)
        """
    )
    env = {**os.environ, "LOCALCTX_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-c", child, str(root)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "mid-batch"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    monkeypatch.setenv("LOCALCTX_HOME", str(home))
    with ArchivalStore.open() as store:
        assert len(store.file_states(str(root))) == 40  # exactly the committed batches
        report = ingest_repo(root, store, workers=1)
        assert (report.files_indexed, report.files_unchanged) == (60, 40)
        assert len(store.file_states(str(root))) == n
        for i in (0, 39, 40, 45, 49, 50, 99):
            hits = store.search(f"zq{i:03}x", k=10)
            assert [h.symbol for h in hits] == [f"func_{i:03}"]
    conn = sqlite3.connect(store_path("archival"))
    try:
        chunks, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT file_id || ':' || start_line) FROM chunks"
        ).fetchone()
        fts = conn.execute("SELECT count(*) FROM chunks_fts").fetchone()[0]
    finally:
        conn.close()
    assert chunks == distinct == fts == n


def test_attach_ingests_once_and_returns_the_digest(repo: Path) -> None:
    ctx = attach(repo)
    try:
        assert ctx.repo == str(repo.resolve()) and ctx.root == repo.resolve()
        assert ctx.report.files_indexed == 5 and "Engine" in ctx.digest
        assert ctx.search("vroom")[0].path == "app/core.py"
    finally:
        ctx.store.close()
    again = attach(repo, token_counter=lambda text: len(text.split()))
    try:
        assert again.report.files_indexed == 0 and again.digest_key == ctx.digest_key
    finally:
        again.store.close()
    assert search_repo(repo, "vroom", 3)[0].symbol == "Engine"  # a small class is one chunk


def test_bad_paths_are_one_error_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "file.py"
    file.write_text("x = 1\n")
    runner = CliRunner()
    for path, words in ((tmp_path / "missing", "does not exist"), (file, "is a file")):
        result = runner.invoke(main, ["ingest", str(path), "--json"])
        assert result.exit_code == Exit.BAD_INPUT
        assert words in result.stderr and result.stdout == ""
    with pytest.raises(BadInput, match="is not ingested yet"):
        search_repo(tmp_path, "anything")

    def refuse(path: object) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(indexer.os, "scandir", refuse)  # root ignores chmod, so refuse here
    result = runner.invoke(main, ["ingest", str(tmp_path)])
    assert result.exit_code == Exit.BAD_INPUT
    assert result.stderr.strip() == (
        f"localctx: cannot read repository directory {tmp_path.resolve()}: Permission denied"
    )


def test_cli_json_and_plain_output(repo: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["ingest", str(repo), "--json", "--exclude", "README.md"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    keys = {"repo", "files_seen", "files_indexed", "files_unchanged", "chunks", "bytes",
            "seconds", "files_per_second", "skipped"}  # fmt: skip
    assert keys <= data.keys()
    assert data["skipped"] == {"excluded": 1, "ignored": 1, "secret": 1}
    assert data["files_indexed"] == 4 and data["repo"] == str(repo.resolve())
    result = runner.invoke(main, ["ingest", str(repo), "--include", "*.py", "--max-file-bytes",
                                  "60"])  # fmt: skip
    assert result.exit_code == 0
    assert "0 indexed" in result.stdout and "too_large" in result.stdout
    assert runner.invoke(main, ["ingest", str(repo), "--max-file-bytes", "0"]).exit_code == 2


def test_memory_search_repo_returns_ranked_chunks_with_lines(repo: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["ingest", str(repo), "--json"]).exit_code == 0
    result = runner.invoke(main, ["memory", "search", "--repo", str(repo), "vroom", "--json"])
    assert result.exit_code == 0, result.output
    hit = json.loads(result.stdout)["hits"][0]
    assert (hit["path"], hit["symbol"], hit["start_line"], hit["end_line"]) == (
        "app/core.py", "Engine", 1, 3,
    )  # fmt: skip
    assert hit["language"] == "python" and "vroom" in hit["text"]
    missing = runner.invoke(main, ["memory", "search", "--repo", str(repo / "nope"), "x"])
    assert missing.exit_code == Exit.BAD_INPUT
