"""The server's HTTP behaviour over real loopback HTTP, with the fake engine (fast, exact).

Beside, not instead of, the real-model tests (test_serve_real.py): here the replies are known
in advance, so streaming, sessions, parking, cancellation, overload and every error status can
be checked exactly and quickly.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from localctx.engine.fake import FakeEngine
from localctx.memory.recall import RecallStore
from localctx.serve.server import ServeConfig
from tests.serving import InProcessServer, streamed_text

CHAT = "/v1/chat/completions"


def ask(text: str, **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], "max_tokens": 64, **fields}


def session_rows(name: str) -> list[tuple[str, str]]:
    with RecallStore() as store:
        if not store.session_exists(name):
            return []
        return [(r, c) for _, r, c in store.messages(store.session_id(name))]


def test_a_streamed_answer_equals_the_whole_one_and_ends_with_done() -> None:
    with InProcessServer(FakeEngine()) as srv:
        client = srv.client()
        whole = client.chat(ask("hello there"))
        assert whole.status == 200
        assert whole.body["choices"][0]["message"]["content"] == "echo: hello there"
        assert whole.body["choices"][0]["finish_reason"] == "stop"
        assert whole.body["object"] == "chat.completion"
        events = list(client.stream(ask("hello there", stream_options={"include_usage": True})))
        assert events[-1] == "[DONE]"
        assert streamed_text(events) == "echo: hello there"
        assert events[0]["choices"][0]["delta"]["role"] == "assistant"  # type: ignore[index]
        usage = events[-2]["usage"]  # type: ignore[index]
        assert usage == whole.body["usage"]
        assert usage["completion_tokens"] == len("echo: hello there")


def test_max_tokens_ends_with_length_and_stop_ends_with_stop() -> None:
    engine = FakeEngine()
    with InProcessServer(engine) as srv:
        client = srv.client()
        cut = client.chat(ask("abcdefghijklmnop", max_tokens=5)).body["choices"][0]
        assert (cut["message"]["content"], cut["finish_reason"]) == ("echo:", "length")
        engine.enqueue("one two STOP three")
        events = list(client.stream(ask("x", stop=["STOP"])))
        assert streamed_text(events) == "one two"
        assert events[-2]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]


def test_a_session_decodes_only_the_new_turn_and_sessions_stay_apart() -> None:
    engine = FakeEngine()
    with InProcessServer(engine) as srv:
        client = srv.client()
        history: list[dict[str, str]] = []
        decoded = []
        for i in range(4):
            history.append({"role": "user", "content": f"question {i}"})
            reply = client.chat({"messages": history, "user": "alice"}).body
            history.append(reply["choices"][0]["message"])
            decoded.append(reply["localctx"]["decoded_prompt_tokens"])
            assert reply["usage"]["prompt_tokens_details"]["cached_tokens"] > 0 or i == 0
        # every turn after the first decodes its own question only, not the history
        assert max(decoded[1:]) <= len("<user>question 3\n<assistant>") + 30
        other = client.chat(ask("question 0"), headers={"X-Localctx-Session": "bob"}).body
        assert other["localctx"]["history"]["stored"] == 0
    assert len(session_rows("alice")) == 8
    assert session_rows("bob") == [("user", "question 0"), ("assistant", "echo: question 0")]


def test_sessions_interleave_through_parking_without_mixing() -> None:
    with InProcessServer(FakeEngine()) as srv:
        client = srv.client()
        histories: dict[str, list[dict[str, str]]] = {"a": [], "b": [], "c": []}
        for turn in range(3):
            for name, history in histories.items():
                history.append({"role": "user", "content": f"{name} turn {turn}"})
                reply = client.chat({"messages": history, "user": name}).body
                assert reply["choices"][0]["message"]["content"] == f"echo: {name} turn {turn}"
                assert reply["localctx"]["history"]["rewound"] is None
                history.append(reply["choices"][0]["message"])
    for name in histories:
        assert len(session_rows(name)) == 6


def test_an_edited_history_rewinds_the_session() -> None:
    with InProcessServer(FakeEngine()) as srv:
        client = srv.client()
        first = client.chat(ask("one", user="s")).body["choices"][0]["message"]
        client.chat({"messages": [ask("one")["messages"][0], first,
                                  {"role": "user", "content": "two"}], "user": "s"})  # fmt: skip
        edited = client.chat(ask("uno", user="s")).body
        assert edited["localctx"]["history"]["rewound"] == "trimmed"
        assert edited["localctx"]["history"]["kept"] == 0
    assert session_rows("s") == [("user", "uno"), ("assistant", "echo: uno")]


def test_a_stateless_request_leaves_nothing_stored() -> None:
    with InProcessServer(FakeEngine()) as srv:
        assert srv.client().chat(ask("nothing to keep")).status == 200
    with RecallStore() as store:
        assert store.counts()["messages"] == 0


def test_a_client_that_disconnects_mid_stream_leaves_no_half_turn() -> None:
    engine = FakeEngine(token_delay=0.05)
    engine.enqueue("a reply that takes a while to come out entirely")
    with InProcessServer(engine) as srv:
        client = srv.client()
        stream = client.stream(ask("question", user="s"))
        for event in stream:
            if isinstance(event, dict) and streamed_text([event]):
                break  # one token arrived: go away
        stream.close()
        gone = ("localctx_requests_total", (("endpoint", CHAT), ("status", "499")))
        deadline = time.monotonic() + 30
        while client.metrics().get(gone) != 1 or srv.worker.busy:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert engine.stats.stop_reason == "cancelled"
        assert engine.stats.decode_tokens < 10  # stopped within a token or two of leaving
        assert session_rows("s") == []
        again = client.chat(ask("question", user="s")).body
        assert again["localctx"]["history"]["stored"] == 0
    assert session_rows("s") == [("user", "question"), ("assistant", "echo: question")]


def test_overload_answers_503_with_retry_after_and_loses_no_accepted_turn() -> None:
    engine = FakeEngine(token_delay=0.02)
    with InProcessServer(engine, ServeConfig(max_queue=1)) as srv:
        client = srv.client()
        results: dict[str, int] = {}
        retry: list[str] = []

        def send(name: str) -> None:
            reply = client.chat(ask(f"hello from {name}", user=name))
            results[name] = reply.status
            if reply.status == 503:
                retry.append(reply.headers["retry-after"])
                assert reply.body["error"]["code"] == "queue_full"

        threads = [threading.Thread(target=send, args=(f"c{i}",)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(set(results.values())) == [200, 503]
        assert all(int(r) >= 1 for r in retry)
    for name, status in results.items():
        rows = session_rows(name)
        assert len(rows) == (2 if status == 200 else 0), (name, status, rows)


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "words"),
    [
        ("POST", CHAT, b"{not json", 400, "not valid JSON"),
        ("POST", CHAT, b"", 400, "empty"),
        ("POST", CHAT, b'{"messages": []}', 400, "at least one"),
        ("POST", CHAT, b'{"messages": "hi"}', 400, "must be an array"),
        ("POST", CHAT, b'{"messages": [{"role": "user", "content": "x"}], "seed": "s"}', 400,
         "integer"),
        ("POST", CHAT, b'{"messages": [{"role": "user", "content": "x"}], "model": "nope"}',
         404, "does not exist"),
        ("POST", CHAT, b"x" * 5000, 413, "over the limit"),
        ("GET", CHAT, None, 405, "not allowed"),
        ("GET", "/v1/nothing", None, 404, "no such endpoint"),
    ],
)  # fmt: skip
def test_bad_input_gets_its_status_and_an_openai_error(
    method: str, path: str, raw: bytes | None, status: int, words: str
) -> None:
    with InProcessServer(FakeEngine(), ServeConfig(max_body=4096)) as srv:
        reply = srv.client().request(method, path, raw=raw)
        assert reply.status == status
        assert words in reply.body["error"]["message"]
        assert set(reply.body["error"]) == {"message", "type", "param", "code"}


def test_an_api_key_guards_everything_but_health() -> None:
    with InProcessServer(FakeEngine(), ServeConfig(api_key="s3cret")) as srv:
        anonymous, wrong, right = (
            srv.client(),
            srv.client(api_key="guess"),
            srv.client(api_key="s3cret"),
        )
        assert anonymous.request("GET", "/health").status == 200
        for path in ("/v1/models", "/metrics"):
            assert anonymous.request("GET", path).status == 401
        assert wrong.chat(ask("x")).status == 401
        assert wrong.chat(ask("x")).body["error"]["code"] == "invalid_api_key"
        assert right.chat(ask("x")).status == 200
        assert right.request("GET", "/v1/models").body["data"][0]["id"] == "fake"


def test_metrics_show_the_kv_regions_and_the_token_counts() -> None:
    with InProcessServer(FakeEngine(), ServeConfig(window=512)) as srv:
        client = srv.client()
        client.chat(ask("measure me", user="m"))
        m = client.metrics()
        cells = {dict(k[1])["region"]: v for k, v in m.items() if k[0] == "localctx_kv_cells"}
        assert set(cells) == {"sink", "pinned", "recalled", "window", "free"}
        assert sum(cells.values()) == 512
        assert m[("localctx_kv_window_cells", ())] == 512
        assert m[("localctx_tokens_total", (("kind", "completion"),))] == len("echo: measure me")
        assert m[("localctx_sessions_open", ())] == 1
        assert m[("localctx_kv_bytes_allocated", ())] > 0


class AbortingEngine(FakeEngine):
    """Stands in for prefill cancellation: a long decode raises as the engine's abort does."""

    def __init__(self) -> None:
        super().__init__()
        self.abort = threading.Event()

    def decode(self, tokens: Any, *, make_room: Any = None) -> None:
        if len(tokens) > 200 and self.abort.is_set():
            raise KeyboardInterrupt("prefill cancelled")
        super().decode(tokens, make_room=make_room)


def test_a_prefill_aborted_by_the_engine_rewinds_the_turn_and_serving_goes_on() -> None:
    engine = AbortingEngine()
    with InProcessServer(engine) as srv:
        client = srv.client()
        first = client.chat(ask("short one", user="s")).body["choices"][0]["message"]
        history = [{"role": "user", "content": "short one"}, first]
        engine.abort.set()
        long = {"role": "user", "content": "long " * 300}  # the engine aborts its prefill
        reply = client.chat({"messages": [*history, long], "user": "s"})
        assert reply.status == 503 and reply.body["error"]["code"] == "cancelled"  # not hung
        engine.abort.clear()
        assert session_rows("s") == [("user", "short one"), ("assistant", "echo: short one")]
        after = client.chat({"messages": [*history, {"role": "user", "content": "after"}],
                             "user": "s"}).body  # fmt: skip
        assert after["localctx"]["history"] == {"stored": 2, "received": 3, "kept": 2,
                                                "rewound": None}  # fmt: skip
    assert len(session_rows("s")) == 4


def test_evicted_segments_are_summarized_while_the_queue_is_idle() -> None:
    with InProcessServer(FakeEngine(), ServeConfig(window=256)) as srv:
        client = srv.client()
        history: list[dict[str, str]] = []
        for i in range(4):
            history.append({"role": "user", "content": f"topic {i} " + "words " * 30})
            reply = client.chat({"messages": history, "user": "idle", "max_tokens": 8}).body
            history.append(reply["choices"][0]["message"])
        assert reply["localctx"]["kv"]["evictions"] > 0
        summaries = ("localctx_events_total", (("event", "summaries"),))
        deadline = time.monotonic() + 30
        while not client.metrics().get(summaries):
            assert time.monotonic() < deadline, "no summary while idle"
            time.sleep(0.2)
    with RecallStore() as store:
        assert store.running_summary(store.session_id("idle"))
