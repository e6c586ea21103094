"""Hostile servers for the remote engine's tests: local threads on 127.0.0.1, bounded in time.

Each server answers /v1/models and /v1/chat/completions with whatever the test's handler
writes (raw bytes, so a reply can be malformed on purpose). Every handler stops on its own
after `limit_s` or when the client goes away, and `stop()` shuts the server down, so a test
that fails cannot leave a thread streaming.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[BaseHTTPRequestHandler, "Hostile"], None]
MODELS_OK = {"data": [{"id": "hostile", "meta": {"n_ctx_train": 2048}}]}


class Hostile:
    def __init__(self, chat: Handler, models: Handler | None = None, limit_s: float = 20.0):
        self.limit_s = limit_s
        self.requests: list[dict[str, Any]] = []
        self.closed_by_client = threading.Event()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            timeout = 10

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                (models or send_models)(self, server)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                server.requests.append(json.loads(self.rfile.read(length) or b"{}"))
                try:
                    chat(self, server)
                except (BrokenPipeError, ConnectionResetError):
                    server.closed_by_client.set()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def until(self) -> float:
        return time.monotonic() + self.limit_s

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def send_models(handler: BaseHTTPRequestHandler, _server: Hostile) -> None:
    body = json.dumps(MODELS_OK).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def start_stream(handler: BaseHTTPRequestHandler, kind: str = "text/event-stream") -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", kind)
    handler.end_headers()


def event(piece: str) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


def canned(handler: BaseHTTPRequestHandler, _server: Hostile) -> None:
    """A well-behaved reply: one chunk, then [DONE]."""
    start_stream(handler)
    handler.wfile.write(event("fine, thanks") + b"data: [DONE]\n\n")


@contextmanager
def hostile(
    chat: Handler, models: Handler | None = None, limit_s: float = 20.0
) -> Iterator[Hostile]:
    server = Hostile(chat, models, limit_s)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def not_http(banner: bytes) -> Iterator[str]:
    """A TCP server that answers every connection with `banner` (an SSH server, say)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(banner)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()
