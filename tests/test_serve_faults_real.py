"""`localctx serve` under faults, with the real model (SmolLM2-135M), over loopback HTTP.

- A client that goes away mid-stream: its turn is rewound, and the session then answers
  exactly as a twin session that never saw the abandoned turn (greedy: the KV cache is
  as it was, token for token in effect).
- `kill -9` of the server mid-stream: the restarted server finds the half-written turn in the
  store, drops it, and the session goes on from its last committed turn; after a clean stop
  the next start resumes from the KV snapshot without re-decoding the history.
- Overload: a full queue answers 503 with Retry-After; no accepted turn is lost and no refused
  one is stored.
- Bad input: one clear OpenAI error with its status for each kind; bad flags exit non-zero
  with one line.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from localctx.memory.recall import RecallStore
from tests.serving import WAIT, Client, ServerProcess, streamed_text

pytestmark = pytest.mark.real
CHAT = "/v1/chat/completions"
LONG = "Write a long story about a lighthouse keeper and a storm."


def rows(home: Path, name: str) -> list[tuple[str, str]]:
    with RecallStore(home / "db" / "recall.sqlite3") as store:
        if not store.session_exists(name):
            return []
        return [(r, c) for _, r, c in store.messages(store.session_id(name))]


def turn(client: Client, name: str, history: list[dict[str, str]], text: str,
         **fields: Any) -> dict[str, Any]:  # fmt: skip
    history.append({"role": "user", "content": text})
    reply = client.chat({"messages": history, "user": name, "max_tokens": 12, **fields})
    assert reply.status == 200, reply.body
    history.append(reply.body["choices"][0]["message"])
    return reply.body


def leave_after_first_tokens(client: Client, body: dict[str, Any], n: int = 2) -> str:
    stream = client.stream(body)
    seen: list[dict[str, Any] | str] = []
    for event in stream:
        seen.append(event)
        if sum(1 for e in seen if streamed_text([e])) >= n:
            break
    stream.close()  # the client goes away mid-answer
    return streamed_text(seen)


def wait_until(check: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_disconnect_mid_stream_rewinds_the_turn_exactly(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "home", "--ctx", "1024").start()
    try:
        client = srv.client()
        twin_a: list[dict[str, str]] = []
        twin_b: list[dict[str, str]] = []
        first_a = turn(client, "a", twin_a, "My dog is called Rex.")
        first_b = turn(client, "b", twin_b, "My dog is called Rex.")
        assert first_a["choices"][0]["message"] == first_b["choices"][0]["message"]

        partial = leave_after_first_tokens(
            client, {"messages": [*twin_a, {"role": "user", "content": LONG}], "user": "a",
                     "max_tokens": 200}
        )  # fmt: skip
        assert partial
        gone = ("localctx_requests_total", (("endpoint", CHAT), ("status", "499")))
        wait_until(lambda: client.metrics().get(gone) == 1, "the 499")
        wait_until(lambda: client.request("GET", "/health").body["busy"] is False, "idle")
        assert rows(srv.home, "a") == rows(srv.home, "b")  # nothing of the abandoned turn

        after_a = turn(client, "a", twin_a, "What is my dog called?")
        after_b = turn(client, "b", twin_b, "What is my dog called?")
        assert after_a["localctx"]["history"]["rewound"] is None
        assert after_a["choices"][0]["message"] == after_b["choices"][0]["message"]
        assert after_a["usage"] == after_b["usage"]
    finally:
        srv.stop()


def test_kill_9_mid_stream_then_restart_keeps_every_committed_turn(tmp_path: Path) -> None:
    home = tmp_path / "home"
    srv = ServerProcess(home, "--ctx", "1024").start()
    history: list[dict[str, str]] = []
    turn(srv.client(), "s", history, "My name is Ada.")
    turn(srv.client(), "s", history, "I live in Lisbon.")
    committed = rows(home, "s")
    assert len(committed) == 4
    streaming = threading.Event()

    def listen() -> None:  # reads the answer until the server dies under it
        body = {"messages": [*history, {"role": "user", "content": LONG}], "user": "s",
                "max_tokens": 400}  # fmt: skip
        got = 0
        try:
            for event in srv.client().stream(body):
                got += bool(streamed_text([event]))
                if got >= 3:
                    streaming.set()
        except OSError:
            pass

    reader = threading.Thread(target=listen)
    reader.start()
    assert streaming.wait(WAIT), "no tokens streamed"
    srv.kill()  # mid-stream: the user's message and an unfinished reply row are in the store
    reader.join(WAIT)
    assert rows(home, "s")[:4] == committed and rows(home, "s")[4] == ("user", LONG)

    srv = ServerProcess(home, "--ctx", "1024").start()
    try:
        again = turn(srv.client(), "s", history, LONG, max_tokens=8)
        assert again["localctx"]["history"] == {"stored": 4, "received": 5, "kept": 4,
                                                "rewound": None}  # fmt: skip
        stored = rows(home, "s")
        assert stored[:4] == committed and len(stored) == 6
        assert stored[5] == ("assistant", again["choices"][0]["message"]["content"])
        assert "left unfinished" in srv.log
    finally:
        assert srv.stop() == 0  # a clean stop saves the session's KV snapshot

    srv = ServerProcess(home, "--ctx", "1024").start()
    try:
        resumed = turn(srv.client(), "s", history, "What is my name?")
        assert resumed["localctx"]["history"]["kept"] == 6
        # from the snapshot: the new message was decoded, not the six before it
        assert resumed["localctx"]["decoded_prompt_tokens"] < 40
    finally:
        srv.stop()


def test_overload_gives_503_and_loses_no_turn(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "home", "--ctx", "1024", "--max-queue", "1").start()
    try:
        client = srv.client()
        status: dict[str, int] = {}
        retry_after: dict[str, str] = {}

        def send(name: str) -> None:
            reply = client.chat({"messages": [{"role": "user", "content": LONG}],
                                 "user": name, "max_tokens": 24})  # fmt: skip
            status[name] = reply.status
            if reply.status == 503:
                retry_after[name] = reply.headers.get("retry-after", "")

        threads = [threading.Thread(target=send, args=(f"c{i}",)) for i in range(5)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join(WAIT)
        refused = [n for n, s in status.items() if s == 503]
        assert refused and len(refused) < 5, status
        assert all(int(retry_after[n]) >= 1 for n in refused)
        for name, code in status.items():
            assert len(rows(srv.home, name)) == (2 if code == 200 else 0)
        for name in refused:  # retried when told: all served
            assert client.chat({"messages": [{"role": "user", "content": LONG}],
                                "user": name, "max_tokens": 24}).status == 200  # fmt: skip
            assert len(rows(srv.home, name)) == 2
        m = client.metrics()
        assert m[("localctx_requests_total", (("endpoint", CHAT), ("status", "503")))] == len(
            refused
        )
    finally:
        srv.stop()


def test_bad_input_gets_one_clear_error_with_its_status(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "home", "--ctx", "1024", "--api-key", "k3y",
                        "--max-body", "4096").start()  # fmt: skip
    try:
        ok = srv.client(api_key="k3y")
        user = {"role": "user", "content": "hi"}
        cases: list[tuple[Client, str, str, bytes | None, int, str]] = [
            (ok, "POST", CHAT, b"{oops", 400, "not valid JSON"),
            (ok, "POST", CHAT, b'{"messages": []}', 400, "at least one message"),
            (ok, "POST", CHAT, b'{"messages": [{"role": "user", "content": 5}]}', 400,
             "must be a string"),
            (ok, "POST", CHAT, b'{"messages": [{"role": "user", "content": "hi"}], '
             b'"temperature": "warm"}', 400, "must be a number"),
            (ok, "POST", CHAT, b'{"messages": [{"role": "user", "content": "hi"}], '
             b'"colour": "red"}', 400, "unrecognized request argument"),
            (ok, "POST", CHAT, b'{"messages": [{"role": "user", "content": "hi"}], '
             b'"model": "gpt-4"}', 404, "does not exist"),
            (ok, "POST", CHAT, b"[" * 5000, 413, "over the limit"),
            (srv.client(), "POST", CHAT, b"{}", 401, "API key"),
            (srv.client(api_key="nope"), "GET", "/v1/models", None, 401, "API key"),
            (ok, "GET", CHAT, None, 405, "not allowed"),
            (ok, "GET", "/v2/chat", None, 404, "no such endpoint"),
        ]  # fmt: skip
        for client, method, path, raw, code, words in cases:
            reply = client.request(method, path, raw=raw)
            assert reply.status == code, (raw, reply.body)
            assert words in reply.body["error"]["message"], (raw, reply.body)
            assert "Traceback" not in str(reply.body)
        assert ok.chat({"messages": [user], "max_tokens": 4}).status == 200  # still serving
        assert srv.client().request("GET", "/health").status == 200
    finally:
        srv.stop()


def test_bad_flags_exit_with_one_line(tmp_path: Path) -> None:
    env = os.environ | {"LOCALCTX_HOME": str(tmp_path / "home")}

    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "localctx", "serve", *args],
                              capture_output=True, text=True, timeout=WAIT, env=env)  # fmt: skip

    public = serve("--host", "0.0.0.0")
    assert public.returncode == 2
    assert public.stderr.count("\n") == 1 and "without an API key" in public.stderr
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        taken = serve("--port", str(busy.getsockname()[1]), "--threads", "1")
    finally:
        busy.close()
    assert taken.returncode == 9
    assert "cannot listen" in taken.stderr and "Traceback" not in taken.stderr
    assert serve("--window", "-5").returncode == 9
