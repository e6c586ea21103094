"""The remote engine against hostile servers (issue #14, cases 1, 2 and 11): every reply is
bounded in tokens, bytes and time, and every refusal is one line with exit 11.

The servers are local http.server threads (tests/hostile.py) that stop on their own; the
client runs as `python -m localctx ask --remote` in a subprocess with a timeout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from localctx.engine.base import Sampling
from localctx.engine.remote import RemoteEngine
from localctx.errors import EngineFailed, Exit
from tests.hostile import Hostile, event, hostile, not_http, start_stream

ROOT = Path(__file__).resolve().parents[1]


def ask(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localctx", "ask", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def one_line_error(out: subprocess.CompletedProcess[str], code: Exit, match: str) -> None:
    assert out.returncode == int(code), (out.returncode, out.stderr[-500:])
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("localctx: "), out.stderr[-500:]
    assert match in lines[0]
    assert out.stdout == ""


def endless(handler: BaseHTTPRequestHandler, server: Hostile) -> None:
    """Ignores max_tokens: streams words until the client hangs up (or limit_s passes)."""
    start_stream(handler)
    end, n = server.until(), 0
    while time.monotonic() < end:
        handler.wfile.write(event(f"w{n % 10} "))
        handler.wfile.flush()
        n += 1


# ------------------------------------------------------------------ case 1: budgets
def test_a_server_ignoring_max_tokens_is_cut_off_at_the_budget() -> None:
    with hostile(endless) as server:
        out = ask("q", "--remote", server.url, "--max-tokens", "16", "--json")
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert data["completion_tokens"] == 16 and data["stop_reason"] == "length"
        assert len(data["answer"].split()) <= 16
        assert server.closed_by_client.wait(10)  # the connection was closed: generation stops
        assert server.requests[-1]["max_tokens"] == 16


def test_room_is_made_per_streamed_token_not_per_byte() -> None:
    def fifty(handler: BaseHTTPRequestHandler, _server: Hostile) -> None:
        start_stream(handler)
        for _ in range(50):
            handler.wfile.write(event("word "))
        handler.wfile.write(b"data: [DONE]\n\n")

    calls: list[int] = []
    with hostile(fifty) as server, RemoteEngine(server.url) as engine:
        engine.decode(engine.tokenize(engine.format_chat([{"role": "user", "content": "q"}])))
        text = "".join(e.text for e in engine.generate(Sampling(), make_room=calls.append))
    assert text == "word " * 50
    assert calls == [5] * 50  # one eviction check per chunk (a token), none per byte


def test_a_long_remote_reply_through_a_small_window_says_nothing_of_m_rope() -> None:
    with hostile(endless) as server:
        out = ask("q", "--remote", server.url, "--max-tokens", "600", "--window", "512", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["completion_tokens"] == 600
    assert data["gauge"]["kv"]["evictions"] > 0  # ~2,400 bytes through 512
    assert "M-RoPE" not in out.stderr and "re-prefill" not in out.stderr


def test_keep_alives_do_not_extend_the_reply_deadline() -> None:
    def keep_alive(handler: BaseHTTPRequestHandler, server: Hostile) -> None:
        start_stream(handler)
        end = server.until()
        while time.monotonic() < end:
            handler.wfile.write(b": keep-alive\n\n")
            handler.wfile.flush()
            time.sleep(0.2)

    with hostile(keep_alive) as server:
        out = ask("q", "--remote", server.url, "--remote-timeout", "2", timeout=30)
        one_line_error(out, Exit.ENGINE_FAILED, "did not finish its reply within 2 s")
        with RemoteEngine(server.url, deadline=1.0) as engine:
            engine.decode(engine.tokenize(engine.format_chat([{"role": "user", "content": "q"}])))
            with pytest.raises(EngineFailed, match="within 1 s"):
                list(engine.generate(Sampling()))


# ------------------------------------------------------------------ case 2: sizes, non-HTTP
def test_a_huge_model_listing_is_refused_after_a_bounded_read() -> None:
    def huge(handler: BaseHTTPRequestHandler, server: Hostile) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(1_500_000_000))
        handler.end_headers()
        block, end = b" " * (1 << 20), server.until()
        try:
            handler.wfile.write(b'{"data": [')
            for _ in range(64):  # 64 MiB at most from this side
                if time.monotonic() > end:
                    break
                handler.wfile.write(block)
        except (BrokenPipeError, ConnectionResetError):
            server.closed_by_client.set()

    def canned(handler: BaseHTTPRequestHandler, _server: Hostile) -> None:
        start_stream(handler)
        handler.wfile.write(event("ok") + b"data: [DONE]\n\n")

    with hostile(canned, models=huge) as server:
        out = ask("q", "--remote", server.url)
    one_line_error(out, Exit.ENGINE_FAILED, "/v1/models reply is over 8 MiB")


def test_a_huge_stream_line_is_refused_after_a_bounded_read() -> None:
    def huge_line(handler: BaseHTTPRequestHandler, server: Hostile) -> None:
        start_stream(handler)
        handler.wfile.write(b'data: {"choices": [{"delta": {"content": "')
        block, end = b"x" * (1 << 20), server.until()
        for _ in range(48):  # a 48 MiB token, as far as this side goes
            if time.monotonic() > end:
                break
            handler.wfile.write(block)
        handler.wfile.write(b'"}}]}\n\ndata: [DONE]\n\n')

    with hostile(huge_line) as server:
        out = ask("q", "--remote", server.url, timeout=90)
    one_line_error(out, Exit.ENGINE_FAILED, "stream line over 1 MiB")


def test_a_server_that_does_not_speak_http_is_one_line_exit_11() -> None:
    with not_http(b"SSH-2.0-OpenSSH_9.6\r\n") as url:
        out = ask("q", "--remote", url)
    one_line_error(out, Exit.ENGINE_FAILED, "did not answer in HTTP")


@pytest.mark.parametrize(
    ("content_type", "body", "match"),
    [
        ("text/html", b"<html><body>It works!</body></html>\n", "not a stream of server-sent"),
        (None, b"hello\n", "held no server-sent events"),
    ],
)
def test_a_200_reply_that_is_not_a_stream_is_an_error_not_an_empty_answer(
    content_type: str | None, body: bytes, match: str
) -> None:
    def page(handler: BaseHTTPRequestHandler, _server: Hostile) -> None:
        handler.send_response(200)
        if content_type:
            handler.send_header("Content-Type", content_type)
        handler.end_headers()
        handler.wfile.write(body)

    with hostile(page) as server:
        out = ask("q", "--remote", server.url, "--json")
    one_line_error(out, Exit.ENGINE_FAILED, match)


# ------------------------------------------------------------------ case 11: the printed URL
def test_ask_json_prints_the_remote_url_whole() -> None:
    def canned(handler: BaseHTTPRequestHandler, _server: Hostile) -> None:
        start_stream(handler)
        handler.wfile.write(event("ok") + b"data: [DONE]\n\n")

    with hostile(canned) as server:
        out = ask("q", "--remote", server.url, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["model_path"] == f"{server.url}/v1"
