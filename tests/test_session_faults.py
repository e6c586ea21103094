"""Sessions under faults (issue #14, cases 4, 9, 10, 11 and 12): a turn stored whole or not at
all, segments on disk the moment they are evicted, and snapshots that are used when they
match and said so when they do not.

CLI cases run `python -m localctx` in a subprocess; the remote ones answer from a local
http.server thread (tests/hostile.py), the rest with the real SmolLM2-135M model on 1 thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from localctx.engine import EngineSettings, Sampling, load_engine
from localctx.errors import Exit, StoreFull
from localctx.memory import recall as recall_module
from localctx.memory.recall import RecallStore
from localctx.memory.snapshots import SnapshotStore
from localctx.session import Session
from tests.clirun import ROOT, cli, count, one_line_error, query, rows
from tests.hostile import canned, hostile
from tests.tmpfs import fill, tmpfs

DATA = Path(__file__).parent / "data" / "devils-dictionary-excerpt.txt"
SHORT = Sampling(max_tokens=6, temperature=0.0)
LOCAL = ("--window", "256", "--ctx", "512", "--threads", "1", "--max-tokens", "6")


def prose(chars: int, start: int = 20_000) -> str:
    return DATA.read_text(encoding="utf-8")[start : start + chars]


# ------------------------------------------------------------- case 4: a turn whole or not at all
def disk_full() -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorcode = 13  # type: ignore[attr-defined]
    return exc


def open_session(engine: Any, home: Path) -> Session:
    return Session(
        engine,
        store=RecallStore(home / "db" / "recall.sqlite3"),
        snapshots=SnapshotStore(home / "snapshots"),
        name="s",
        window=256,
        summarize_per_turn=0,
    )


@pytest.mark.real
@pytest.mark.parametrize("fail_at", ["a segment", "the answer"])
def test_a_full_disk_mid_turn_stores_nothing_of_the_turn(
    smollm_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    home = tmp_path / "home"
    settings = EngineSettings(model_path=smollm_path, n_ctx=512, n_threads=1)
    with load_engine(settings) as engine:
        first = open_session(engine, home)
        first.ask("Say hello.", SHORT)
        first.close()
        saved = list(engine.tokens)
    store = RecallStore(home / "db" / "recall.sqlite3")
    before = (store.messages(store.session_id("s")), store.counts()["segments"])
    key = store.snapshot_key(store.session_id("s"))
    store.close()
    # Every row the turn writes is indexed: fail the Nth index write, as a full disk would.
    real_index = RecallStore._index
    writes = {"n": 0}
    fail_on = 3 if fail_at == "a segment" else None  # 1, 2: the turn's two messages

    def index(self: RecallStore, kind: str, ref: int, body: str) -> None:
        writes["n"] += 1
        last = fail_on is None and kind == "message" and writes["n"] > 2
        if writes["n"] == fail_on or last:
            raise disk_full()
        real_index(self, kind, ref, body)

    with load_engine(settings) as engine:
        session = open_session(engine, home)
        monkeypatch.setattr(recall_module.RecallStore, "_index", index)
        with pytest.raises(StoreFull, match="nothing of this turn was stored") as raised:
            session.ask(prose(2400), SHORT)  # ~600 tokens through a 256-cell window
        monkeypatch.setattr(recall_module.RecallStore, "_index", real_index)
        assert raised.value.exit_code == Exit.STORE_FULL
        assert writes["n"] >= 3
        session.close()  # no snapshot of the failed turn's cache
    store = RecallStore(home / "db" / "recall.sqlite3")
    sid = store.session_id("s")
    assert (store.messages(sid), store.counts()["segments"]) == before
    assert not store.has_open_turn(sid)
    assert store.snapshot_key(sid) == key
    store.close()
    with load_engine(settings) as engine:
        resumed = open_session(engine, home)
        resumed.prepare_turn()
        assert resumed.notices == []  # the snapshot matches the stored history: used, silently
        assert engine.tokens == saved


def test_a_full_disk_mid_turn_on_a_tmpfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with tmpfs(tmp_path / "mnt", "3m") as mnt, hostile(canned) as server:
        home = mnt / "home"
        monkeypatch.setenv("LOCALCTX_HOME", str(home))
        remote = ("--session", "s", "--remote", server.url, "--window", "2048")
        assert cli("ask", "first question", *remote).returncode == 0
        # Room for the question, not for the segments its prefill evicts: the disk fills
        # mid-turn (measured here: with 300 to 600 KiB left, the question fits and its
        # segments do not).
        filler = fill(mnt, leave=450 * 1024)
        question = "".join(
            f"line {i} of a long question about the blue depot\n" for i in range(1500)
        )
        out = cli("ask", "-", *remote, input=question)
        line = one_line_error(out, Exit.STORE_FULL, "no space left")
        # Taking the turn back is a write too: on a disk this full it waits for the next start.
        assert line.endswith("this turn is taken back when the session next starts")
        filler.unlink()
        again = cli("ask", "and now?", *remote)
        assert again.returncode == 0, again.stderr
        assert "did not finish" in again.stderr
        assert [r for r, _ in rows(home)] == ["user", "assistant", "user", "assistant"]
        assert rows(home)[2] == ("user", "and now?")
        assert count(home, "SELECT count(*) FROM open_turn_rows") == 0


# ------------------------------------------------------------------ case 10: segments at once
@pytest.mark.real
def test_kill_9_during_a_long_prefill_leaves_the_evicted_segments_on_disk(
    _isolated_home: Path, tmp_path: Path
) -> None:
    question = prose(14_000)  # ~3,500 tokens through a 256-cell window
    child = subprocess.Popen(
        [sys.executable, "-m", "localctx", "ask", question, "--session", "k", *LOCAL],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    answered = threading.Event()
    threading.Thread(target=lambda: child.stdout.read(1) and answered.set(), daemon=True).start()
    db = _isolated_home / "db" / "recall.sqlite3"
    segments, deadline = 0, time.monotonic() + 180
    while time.monotonic() < deadline and not answered.is_set() and child.poll() is None:
        if db.exists():
            try:
                segments = count(_isolated_home, "SELECT count(*) FROM segments")
            except sqlite3.Error:
                segments = 0
            if segments:
                break
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert not answered.is_set(), "the prefill finished before any segment reached the disk"
    assert segments > 0
    assert count(_isolated_home, "SELECT count(*) FROM segments") >= segments  # still there
    # The next start takes the unfinished turn back, whole, and says so.
    out = cli("ask", "Say hi.", "--session", "k", *LOCAL)
    assert out.returncode == 0, out.stderr
    assert "did not finish" in out.stderr
    assert [r for r, _ in rows(_isolated_home)] == ["user", "assistant"]
    assert rows(_isolated_home)[0] == ("user", "Say hi.")


# ------------------------------------------------------------------ case 9: bounded summaries
@pytest.mark.real
def test_ask_summarizes_a_bounded_number_of_segments_after_printing_its_json(
    _isolated_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from localctx.cli import main
    from localctx.oneshot import ASK_SUMMARY_BOUND

    question = prose(8_000)  # ~2,000 tokens: many segments of a 256-cell window
    printed_before: list[str] = []
    real = Session.summarize_pending

    def summarize(self: Session, max_segments: int | None = None) -> int:
        printed_before.append(capsys.readouterr().out)  # stdout when the summaries begin
        return real(self, max_segments)

    monkeypatch.setattr(Session, "summarize_pending", summarize)
    args = ["ask", question, "--session", "b", *LOCAL, "--json"]
    main.main(args, standalone_mode=False)
    rest = capsys.readouterr().out
    assert rest == ""  # nothing was left to print after the summaries
    (answer,) = [json.loads(out) for out in printed_before if out.strip()]
    assert answer["session"] == "b"
    done = count(_isolated_home, "SELECT count(*) FROM segments WHERE summary_status = 'done'")
    pending = count(_isolated_home, "SELECT count(*) FROM segments WHERE summary_status != 'done'")
    assert done == ASK_SUMMARY_BOUND and pending > 0  # the rest wait for the next start


# ------------------------------------------------------------------ case 11: snapshots
@pytest.mark.real
def test_a_deleted_or_displaced_snapshot_is_said_so_and_a_new_one_saved(
    _isolated_home: Path,
) -> None:
    assert cli("ask", "Say hello.", "--session", "d", *LOCAL).returncode == 0
    snaps = _isolated_home / "snapshots"
    (first,) = [p for p in snaps.glob("*.kvsnap")]
    first.unlink()
    out = cli("ask", "Say goodbye.", "--session", "d", *LOCAL)
    assert out.returncode == 0, out.stderr
    assert "is missing; recomputing" in out.stderr
    (second,) = [p for p in snaps.glob("*.kvsnap")]
    second.unlink()
    second.mkdir()  # something that is not a snapshot file under the snapshot's name
    out = cli("ask", "Say thanks.", "--session", "d", *LOCAL)
    assert out.returncode == 0, out.stderr
    assert "not saved" not in out.stderr  # it was saved; only the old one could not go
    key = count_key(_isolated_home, "d")
    assert (snaps / f"{key}.kvsnap").is_file()


def count_key(home: Path, name: str) -> str:
    (found,) = query(home, f"SELECT snapshot_key FROM sessions WHERE name = '{name}'")
    return str(found[0])


@pytest.mark.real
def test_a_snapshot_taken_after_summaries_is_used_on_resume(
    smollm_path: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    settings = EngineSettings(model_path=smollm_path, n_ctx=512, n_threads=1)
    with load_engine(settings) as engine:
        session = open_session(engine, home)
        session.feed("user", prose(2400))  # evicts segments
        assert session.summarize_pending(1) == 1  # a new running summary, not yet pinned
        session.close()
        saved = list(engine.tokens)
    with load_engine(settings) as engine:
        resumed = open_session(engine, home)
        resumed.prepare_turn()
        assert not any("predates" in n for n in resumed.notices), resumed.notices
        assert engine.tokens == saved  # restored, not recomputed
        assert resumed.context.pinned_dirty  # the summary enters at the next rebuild


@pytest.mark.real
def test_a_snapshot_key_that_is_not_hex_never_names_a_file(_isolated_home: Path) -> None:
    assert cli("ask", "Say hi.", "--session", "v", *LOCAL).returncode == 0
    victim = _isolated_home / "victim.kvsnap"
    victim.write_text("not ours to delete")
    conn = sqlite3.connect(_isolated_home / "db" / "recall.sqlite3")
    conn.execute("UPDATE sessions SET snapshot_key = '../victim' WHERE name = 'v'")
    conn.commit()
    conn.close()
    out = cli("ask", "Say bye.", "--session", "v", *LOCAL)
    assert out.returncode == 0, out.stderr
    assert "is not a snapshot key" in out.stderr
    assert victim.read_text() == "not ours to delete"
    store = SnapshotStore()
    assert store.delete("../victim") is False
    with pytest.raises(ValueError, match="not a snapshot key"):
        store.path("../victim")
