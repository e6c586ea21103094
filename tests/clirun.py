"""Run `python -m localctx` from this checkout in a subprocess, and check the error contract:
one line on stderr starting `localctx: `, its exit code, no traceback, nothing on stdout."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from localctx.errors import Exit

ROOT = Path(__file__).resolve().parents[1]


def cli(
    *args: str,
    input: bytes | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 240,
) -> subprocess.CompletedProcess[str]:
    data = input.encode() if isinstance(input, str) else input
    done = subprocess.run(
        [sys.executable, "-m", "localctx", *args],
        input=data,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def one_line_error(out: subprocess.CompletedProcess[str], code: Exit, match: str) -> str:
    assert out.returncode == int(code), (out.returncode, out.stderr[-800:])
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("localctx: "), out.stderr[-800:]
    assert match in lines[0], lines[0]
    assert "Traceback" not in out.stderr
    assert out.stdout == ""
    return lines[0]


def query(home: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows of the recall store under `home`, read-only (a writer may hold it open)."""
    conn = sqlite3.connect(f"file:{home / 'db' / 'recall.sqlite3'}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def rows(home: Path) -> list[tuple[str, str]]:
    """(role, content) of every stored message, oldest first."""
    return [
        (str(r), str(c)) for r, c in query(home, "SELECT role, content FROM messages ORDER BY id")
    ]


def count(home: Path, sql: str) -> int:
    return int(query(home, sql)[0][0])  # type: ignore[call-overload]
