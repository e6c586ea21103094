"""Helpers for the serve tests: a server in this process (fake or real engine) or in a child
process (`python -m localctx serve`, for kill -9), and a small HTTP client on http.client.

Waits are bounded (a loaded 2-core machine can take long; nothing here waits forever).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localctx.engine.base import Engine
from localctx.serve.server import ServeConfig, build, listen, uvicorn_server

WAIT = 120.0  # seconds any wait here may take at most


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


class Client:
    def __init__(self, port: int, *, api_key: str | None = None, timeout: float = WAIT) -> None:
        self.port = port
        self.api_key = api_key
        self.timeout = timeout

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers | (extra or {})

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            conn.request(method, path, body=data, headers=self._headers(headers))
            resp = conn.getresponse()
            text = resp.read().decode()
            kind = resp.getheader("Content-Type", "")
            parsed = json.loads(text) if kind.startswith("application/json") and text else text
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed)
        finally:
            conn.close()

    def chat(self, body: dict[str, Any], *, headers: dict[str, str] | None = None) -> Reply:
        return self.request("POST", "/v1/chat/completions", body, headers=headers)

    def stream(
        self, body: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> Iterator[dict[str, Any] | str]:
        """Parsed `data:` events of a streamed chat; "[DONE]" last. Closing the iterator early
        closes the connection (a client that goes away)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request(
                "POST",
                "/v1/chat/completions",
                body=json.dumps(body | {"stream": True}).encode(),
                headers=self._headers(headers),
            )
            resp = conn.getresponse()
            if resp.status != 200:
                yield {"status": resp.status, "body": json.loads(resp.read() or b"null")}
                return
            while True:
                line = resp.fp.readline()
                if not line:
                    return
                text = line.decode().strip()
                if not text.startswith("data:"):
                    continue
                data = text[5:].strip()
                if data == "[DONE]":
                    yield "[DONE]"
                    return
                yield json.loads(data)
        finally:
            conn.close()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        from prometheus_client.parser import text_string_to_metric_families

        text = self.request("GET", "/metrics").body
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out


def streamed_text(events: list[dict[str, Any] | str]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


@dataclass
class InProcessServer:
    """The real app and worker over `engine`, on a loopback port, in a thread."""

    engine: Engine
    config: ServeConfig = field(default_factory=ServeConfig)
    model_path: Path = Path("fake.gguf")

    def __enter__(self) -> InProcessServer:
        self.served = build(self.engine, self.config, model_path=self.model_path)
        self.worker = self.served.worker
        sock = listen("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.server = uvicorn_server(self.served.app, self.config.max_queue)
        self.worker.start()
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + WAIT
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def client(self, **options: Any) -> Client:
        return Client(self.port, **options)

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT)
        self.served.close()


class ServerProcess:
    """`python -m localctx serve --port 0 …` in a child process with its own home."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.args = args
        self.env = os.environ | {"LOCALCTX_HOME": str(home)} | (env or {})
        self.lines: list[str] = []

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "localctx", "serve", "--port", "0", "--threads", "1",
             *self.args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        deadline = time.monotonic() + WAIT
        while True:
            found = [m for line in self.lines if (m := re.search(r":(\d+)/v1 ", line))]
            if found:
                self.port = int(found[0].group(1))
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve did not start: {self.log}")
            time.sleep(0.05)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def client(self, **options: Any) -> Client:
        return Client(self.port, **options)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(WAIT)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(WAIT)
