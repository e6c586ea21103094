"""One process per named session (issue #14, case 3): a second `ask`/`chat --session S`
waits briefly, then refuses with the holder's pid (exit 14); the stored rows never interleave.

The remote answers come from local http.server threads (tests/hostile.py), bounded in time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from localctx.errors import Exit
from localctx.memory.locks import SessionLock
from tests.clirun import ROOT, cli, one_line_error, rows
from tests.hostile import Hostile, canned, event, hostile, start_stream


def slow(handler: BaseHTTPRequestHandler, server: Hostile) -> None:
    """Answers after 6 s: long enough that a second process meets the first one's lock."""
    start_stream(handler)
    end = time.monotonic() + 6
    while time.monotonic() < end:
        handler.wfile.write(b": working\n\n")
        handler.wfile.flush()
        time.sleep(0.5)
    handler.wfile.write(event("slow answer") + b"data: [DONE]\n\n")


# ------------------------------------------------------------- case 3: one process per session
def test_a_session_held_by_another_process_is_refused_with_its_holder(
    _isolated_home: Path,
) -> None:
    with hostile(canned) as server:
        with SessionLock.acquire("c"):
            line = one_line_error(
                cli("ask", "q", "--session", "c", "--remote", server.url),
                Exit.SESSION_BUSY,
                "session 'c' is open in another localctx process",
            )
            assert f"pid {os.getpid()}" in line
            one_line_error(cli("chat", "--session", "c"), Exit.SESSION_BUSY, "session 'c'")
            assert cli("ask", "q", "--session", "other", "--remote", server.url).returncode == 0
        assert cli("ask", "q", "--session", "c", "--remote", server.url).returncode == 0
    assert [r for r, _ in rows(_isolated_home)] == ["user", "assistant"] * 2
    assert list((_isolated_home / "locks").iterdir()) == []  # released: no files pile up


def test_two_asks_on_one_session_never_interleave(_isolated_home: Path) -> None:
    with hostile(slow) as server:
        cmd = [sys.executable, "-m", "localctx", "ask", "--session", "c", "--remote", server.url]
        first = subprocess.Popen([*cmd, "first question"], cwd=ROOT, stderr=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 60
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.05)  # the first holds the session once its request is out
        second = cli("ask", "second question", "--session", "c", "--remote", server.url)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    one_line_error(second, Exit.SESSION_BUSY, "session 'c' is open in another")
    assert rows(_isolated_home) == [("user", "first question"), ("assistant", "slow answer")]


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom localctx.memory.locks import SessionLock\n"
         "lock = SessionLock.acquire('k'); print('held', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    with pytest.raises(Exception, match="open in another"):
        SessionLock.acquire("k", wait=0.2)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    SessionLock.acquire("k", wait=2.0).release()  # the kernel dropped it with its holder
