"""A healthy store on a device that refuses writes is not corrupt (issue #14, cases 6, 7 and 11):
a read-only mount, a full disk and a missing permission each get one line and their own exit
code, the store is left byte for byte, and no message quotes stored text.

The read-only and full cases run on a small tmpfs (skipped, with the reason, where none can
be mounted); the permission case is classified from a monkeypatched access check, since the
tests run as root, whom permissions do not stop.
"""

from __future__ import annotations

import hashlib
import sqlite3
import stat
from pathlib import Path

import pytest

from localctx.errors import Exit, StoreCorrupt, StoreFull, StoreUnwritable, from_os_error
from localctx.memory import db
from localctx.memory.recall import RecallStore
from tests.clirun import cli, one_line_error
from tests.tmpfs import fill, remount, tmpfs


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_repo(root: Path) -> Path:
    root.mkdir()
    (root / "app.py").write_text("def retry_policy():\n    return 3\n")
    return root


@pytest.fixture
def mounted_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    with tmpfs(tmp_path / "mnt", "4m") as mnt:
        home = mnt / "home"
        monkeypatch.setenv("LOCALCTX_HOME", str(home))
        yield home


def test_a_read_only_store_is_not_called_corrupt(mounted_home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    assert cli("ingest", str(repo), "--no-dense", "--json").returncode == 0
    assert cli("memory", "stats").returncode == 0
    stores = sorted((mounted_home / "db").glob("*.sqlite3"))
    before = {p: digest(p) for p in stores}
    remount(mounted_home.parent, "ro")
    try:
        for args in (("memory", "list"), ("memory", "stats"), ("ingest", str(repo), "--no-dense")):
            line = one_line_error(cli(*args), Exit.STORE_UNWRITABLE, "read-only file system")
            assert "corrupt" not in line and "move it away" not in line
    finally:
        remount(mounted_home.parent, "rw")
    assert {p: digest(p) for p in stores} == before


def test_a_full_disk_is_its_own_error_for_memory_and_ingest(
    mounted_home: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    assert cli("memory", "stats").returncode == 0
    assert cli("ingest", str(repo), "--no-dense").returncode == 0
    (repo / "more.py").write_text("def backoff():\n    return 2\n" * 200)
    recall = mounted_home / "db" / "recall.sqlite3"
    before = digest(recall)
    filler = fill(mounted_home.parent)
    try:
        for args in (("memory", "list"), ("ingest", str(repo), "--no-dense")):
            line = one_line_error(cli(*args), Exit.STORE_FULL, "no space left")
            assert "corrupt" not in line
    finally:
        filler.unlink()
    assert digest(recall) == before
    assert cli("ingest", str(repo), "--no-dense").returncode == 0  # space back: all is well


def test_full_read_only_and_permission_errors_are_classified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db" / "recall.sqlite3"
    RecallStore(path).close()
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13  # type: ignore[attr-defined]
    assert isinstance(db.classify(full, path), StoreFull)
    readonly = sqlite3.OperationalError("attempt to write a readonly database")
    readonly.sqlite_errorcode = 8  # type: ignore[attr-defined]
    monkeypatch.setattr(db.os, "access", lambda p, mode: Path(p) != path.parent)
    denied = db.classify(readonly, path)
    assert isinstance(denied, StoreUnwritable) and "no permission to write" in str(denied)
    assert isinstance(
        from_os_error(PermissionError(13, "Permission denied", "x"), "x"), StoreUnwritable
    )
    assert isinstance(from_os_error(OSError(28, "No space left on device"), "x"), StoreFull)
    malformed = sqlite3.DatabaseError("database disk image is malformed")
    malformed.sqlite_errorcode = 11  # type: ignore[attr-defined]
    assert isinstance(db.classify(malformed, path), StoreCorrupt)


def test_a_damaged_text_page_is_corrupt_and_never_quoted(tmp_path: Path) -> None:
    store = RecallStore()
    sid = store.session_id("work")
    store.add_message(sid, "user", "ZQXJ-4471 the access code for the blue depot")
    store.close()
    path = Path(store.path)
    data = bytearray(path.read_bytes())
    at = data.find(b"ZQXJ-4471")
    assert at > 0
    data[at : at + 4] = b"\xff\xfe\xff\xfe"  # invalid UTF-8 inside the stored text
    path.write_bytes(bytes(data))
    before = digest(path)
    for args in (("memory", "list"), ("memory", "export")):
        line = one_line_error(cli(*args), Exit.STORE_CORRUPT, "not valid UTF-8")
        assert "blue depot" not in line and "4471" not in line
    assert digest(path) == before


def test_localctx_home_naming_a_file_is_bad_input(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "home-file"
    not_a_dir.write_text("x")
    env = {"LOCALCTX_HOME": str(not_a_dir)}
    for args in (
        ("memory", "stats"),
        ("where", "db"),
        ("memory", "search", "depot"),
    ):
        one_line_error(cli(*args, env=env), Exit.BAD_INPUT, "is not a directory")
    assert not_a_dir.read_text() == "x"


def test_loose_data_directories_are_tightened_with_a_notice(tmp_path: Path) -> None:
    home = tmp_path / "localctx-home"
    for sub in ("", "db", "snapshots"):
        (home / sub).mkdir(exist_ok=True)
        (home / sub).chmod(0o755)
    out = cli("memory", "stats", "--json")
    assert out.returncode == 0, out.stderr
    for sub in ("", "db", "snapshots"):
        assert stat.S_IMODE((home / sub).stat().st_mode) == 0o700, sub
    assert "tightened" in out.stderr
    assert "tightened" not in cli("memory", "stats", "--json").stderr  # said once
