"""RemoteEngine against tiny OpenAI-compatible servers on 127.0.0.1 that the tests start.

The servers speak /v1/models and streaming /v1/chat/completions (server-sent events, as
llama-server does), run in a daemon thread, time out their sockets, and are shut down by the
fixture. One answers with canned text; one answers with the real SmolLM2 model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from localctx.engine.base import Sampling
from localctx.engine.remote import (
    RemoteEngine,
    base_url,
    parse_event,
    parse_transcript,
    render_transcript,
    request_body,
)
from localctx.errors import BadInput, EngineFailed
from localctx.session import Session

Reply = Callable[[list[dict[str, str]], dict[str, Any]], list[str]]


class _Server:
    def __init__(self, reply: Reply, n_ctx_train: int = 2048) -> None:
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 30  # a stuck client cannot hold a handler thread for long

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != "/v1/models":
                    self.send_error(404)
                    return
                body = {"data": [{"id": "tiny", "meta": {"n_ctx_train": n_ctx_train}}]}
                self._send(200, json.dumps(body).encode(), "application/json")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length))
                server.requests.append(request)
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                pieces = reply(request["messages"], request)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for piece in pieces:
                    chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                usage = {"choices": [], "usage": {"completion_tokens": len(pieces)}}
                self.wfile.write(f"data: {json.dumps(done)}\n\n".encode())
                self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())

            def _send(self, code: int, body: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def canned() -> Iterator[_Server]:
    def reply(messages: list[dict[str, str]], _request: dict[str, Any]) -> list[str]:
        return ["You said: ", messages[-1]["content"][:40], " — ok"]

    server = _Server(reply)
    yield server
    server.stop()


# ------------------------------------------------------------------ pure parts
def test_base_url_accepts_the_usual_forms() -> None:
    assert base_url("http://h:8080") == "http://h:8080/v1"
    assert base_url("http://h:8080/v1/") == "http://h:8080/v1"
    assert base_url("https://h/x/v1/chat/completions") == "https://h/x/v1"
    for bad in ("h:8080", "ftp://h", "http://"):
        with pytest.raises(BadInput):
            base_url(bad)


def test_transcript_is_prefix_stable_and_round_trips() -> None:
    a = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi\x1e"}]
    b = [*a, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "más"}]
    one = render_transcript(a, add_generation_prompt=False)  # type: ignore[arg-type]
    two = render_transcript(b, add_generation_prompt=True)  # type: ignore[arg-type]
    assert two.startswith(one)
    parsed = parse_transcript(two)
    assert [m["role"] for m in parsed] == ["system", "user", "assistant", "user"]
    assert parsed[1]["content"] == "hi "  # separators inside text are neutralised
    assert parse_transcript("just a prompt") == [{"role": "user", "content": "just a prompt"}]


def test_parse_event_handles_keepalives_done_and_errors() -> None:
    assert parse_event(": keep-alive") is None
    assert parse_event("data: [DONE]") == {}
    assert parse_event('data: {"choices": []}') == {"choices": []}
    with pytest.raises(EngineFailed, match="overloaded"):
        parse_event('data: {"error": {"message": "overloaded"}}')
    with pytest.raises(EngineFailed, match="malformed"):
        parse_event("data: {nope")


def test_request_body_is_greedy_without_top_k() -> None:
    body = request_body([{"role": "user", "content": "q"}], Sampling(max_tokens=7), "m")
    assert body["stream"] is True and body["max_tokens"] == 7 and body["temperature"] == 0.0
    assert "top_k" not in body


# ------------------------------------------------------------------ against a server
def test_remote_engine_streams_a_reply_through_a_session(canned: _Server) -> None:
    with RemoteEngine(canned.url) as engine:
        assert engine.model_name == "tiny"
        assert engine.n_ctx == 2048 * 4  # bytes: the server's context x 4
        session = Session(engine, system_prompt="be brief")
        first = session.ask("what is 2+2?", Sampling(max_tokens=32))
        assert first.answer == "You said: what is 2+2? — ok"
        assert first.completion_tokens == 3  # the server's usage report
        assert first.stop_reason == "eog"
        second = session.ask("and 3+3?", Sampling(max_tokens=32))
        assert second.answer.startswith("You said: and 3+3?")
    sent = canned.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[2]["content"].startswith("You said: what is 2+2?")
    assert canned.requests[-1]["max_tokens"] == 32


def test_cancel_stops_the_stream(canned: _Server) -> None:
    cancel = threading.Event()
    with RemoteEngine(canned.url) as engine:
        engine.decode(engine.tokenize(engine.format_chat([{"role": "user", "content": "x"}])))
        got = []
        for event in engine.generate(Sampling(), cancel=cancel):
            got.append(event.text)
            cancel.set()
        assert len(got) == 1 and engine.stats.stop_reason == "cancelled"


def test_local_only_features_say_so(canned: _Server) -> None:
    with RemoteEngine(canned.url) as engine:
        assert engine.can_shift is False
        local_only = (
            lambda: engine.state_save(Path("x")),
            engine.last_logits,
            lambda: engine.kv_shift(0, 1, -1),
        )
        for call in local_only:
            with pytest.raises(EngineFailed, match="needs the local engine"):
                call()


def test_summaries_are_written_by_the_server(canned: _Server, tmp_path: Path) -> None:
    """Evicted turns are summarized remotely: the summarizer's prompt is a request to the
    server, and the conversation's request text comes back exactly afterwards."""
    from localctx.memory.recall import RecallStore

    with RemoteEngine(canned.url) as engine:
        store = RecallStore(tmp_path / "recall.sqlite3")
        session = Session(engine, store=store, name="r", window=900, summarize_per_turn=0)
        for i in range(6):
            session.ask(f"message {i}: " + "words " * 40, Sampling(max_tokens=32))
        assert store.pending_segments(session_id=session.session_id)
        held = engine.tokens
        asked = len(canned.requests)
        assert session.summarize_pending(1) == 1
        assert engine.tokens == held  # the request text was given back
        summary_request = canned.requests[asked]["messages"]
        assert "Summarize this excerpt" in summary_request[-1]["content"]
        assert session.running_summary.startswith("You said: Summarize")
        store.close()


def test_unreachable_server_is_one_clear_error() -> None:
    with pytest.raises(EngineFailed, match="not reachable"):
        RemoteEngine("http://127.0.0.1:9", timeout=2)  # port 9 (discard): nothing listens


def test_cli_ask_remote(canned: _Server, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "localctx", "ask", "hello there", "--remote", canned.url]
    out = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["answer"].startswith("You said: hello there")
    assert result["model"] == "tiny"
    bad = subprocess.run([*cmd[:-1], "ftp://x"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 9 and bad.stderr.count("\n") == 1
    assert "--remote needs an http(s) URL" in bad.stderr


# ------------------------------------------------------------------ the real model behind it
@pytest.mark.real
def test_remote_engine_against_a_real_model_server(smollm: Any) -> None:
    """The server side runs the real SmolLM2 engine; the client is a RemoteEngine session."""

    def reply(messages: list[dict[str, str]], request: dict[str, Any]) -> list[str]:
        smollm.kv_clear()
        smollm.decode(smollm.tokenize(smollm.format_chat(messages), add_special=True))
        sampling = Sampling(max_tokens=request["max_tokens"], temperature=0.0)
        return [event.text for event in smollm.generate(sampling)]

    server = _Server(reply)
    try:
        with RemoteEngine(server.url) as engine:
            session = Session(engine)
            result = session.ask("What is the capital of France?", Sampling(max_tokens=16))
    finally:
        server.stop()
    # The same greedy answer the local engine gives to the same messages.
    smollm.kv_clear()
    messages = server.requests[-1]["messages"]
    smollm.decode(smollm.tokenize(smollm.format_chat(messages), add_special=True))
    local = "".join(e.text for e in smollm.generate(Sampling(max_tokens=16, temperature=0.0)))
    assert result.answer == local.strip()
    assert "Paris" in result.answer
