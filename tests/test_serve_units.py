"""localctx.serve's pure parts: request checks, history matching, the stream gate, the fair
queue, the journal, the Prometheus text and the bind rules. No model, no HTTP."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from localctx.errors import LocalctxError
from localctx.serve.gate import TextGate
from localctx.serve.history import plan_history
from localctx.serve.journal import ServeJournal
from localctx.serve.metrics import ServeMetrics, render
from localctx.serve.protocol import ApiError, Message, parse_chat_request
from localctx.serve.queue import FairQueue, QueueClosed, QueueFull
from localctx.serve.server import check_bind, is_loopback
from localctx.turns import cut_index as _cut_index


def body(**fields: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": "hi"}], **fields}


# ---------------------------------------------------------------------- protocol
def test_a_plain_request_gets_localctx_defaults() -> None:
    req = parse_chat_request(body())
    assert req.system is None and req.session is None and not req.stream
    assert req.history == (Message("user", "hi"),)
    assert req.sampling.temperature == 0.0  # greedy, as `localctx ask`
    assert req.sampling.max_tokens == 512
    assert req.sampling.stop == ()


def test_every_supported_field_reaches_the_request() -> None:
    req = parse_chat_request(
        {
            "model": "smollm2-135m",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text",
                                                                               "text": "b"}]},
                {"role": "assistant", "content": "c"},
                {"role": "user", "content": "d"},
            ],
            "max_tokens": 7,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": "END",
            "seed": 42,
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": "alice",
            "frequency_penalty": 0,
            "n": 1,
        }
    )  # fmt: skip
    assert req.model == "smollm2-135m" and req.system == "Be brief."
    assert [m.content for m in req.history] == ["ab", "c", "d"]
    s = req.sampling
    assert (s.max_tokens, s.temperature, s.top_p, s.stop, s.seed) == (7, 0.5, 0.9, ("END",), 42)
    assert req.stream and req.include_usage and req.session == "alice"


def test_the_session_header_wins_over_the_user_field() -> None:
    req = parse_chat_request(body(user="alice"), session_header="project-x")
    assert req.session == "project-x"


@pytest.mark.parametrize(
    ("payload", "param", "words"),
    [
        ([1, 2], None, "JSON object"),
        ({}, "messages", "required"),
        ({"messages": []}, "messages", "at least one"),
        ({"messages": "hi"}, "messages", "array"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "string"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "one of"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]", "tool"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages", "only a system"),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
         "messages[1]", "last message"),
        (body(max_tokens="ten"), "max_tokens", "integer"),
        (body(max_tokens=0), "max_tokens", "between"),
        (body(temperature="hot"), "temperature", "number"),
        (body(temperature=9), "temperature", "between"),
        (body(stream="yes"), "stream", "true or false"),
        (body(stop=["a", "b", "c", "d", "e"]), "stop", "at most 4"),
        (body(stop=[1]), "stop", "strings"),
        (body(n=2), "n", "not supported"),
        (body(tools=[{"type": "function"}]), "tools", "not supported"),
        (body(response_format={"type": "json_object"}), "response_format", "not supported"),
        (body(stream_options={"include_usage": True}), "stream", "only allowed"),
        (body(bogus=1), "bogus", "unrecognized"),
        (body(user=7), "user", "string"),
        (body(user="a\nb"), "user", "printable"),
        (body(messages=[{"role": "user", "content": [{"type": "image_url"}]}]),
         "messages[0].content", "only text"),
    ],
)  # fmt: skip
def test_bad_requests_name_the_problem(payload: object, param: str | None, words: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_chat_request(payload)
    assert info.value.status == 400
    assert info.value.param == param
    assert words in info.value.message
    assert info.value.body()["error"]["type"] == "invalid_request_error"


# ---------------------------------------------------------------------- history
U1, A1, U2, A2, U3 = (Message(r, t) for r, t in
                      [("user", "u1"), ("assistant", "a1"), ("user", "u2"), ("assistant", "a2"),
                       ("user", "u3")])  # fmt: skip


def test_a_resent_history_decodes_only_what_is_new() -> None:
    plan = plan_history([U1, A1], [U1, Message("assistant", " a1\n"), U2])
    assert (plan.keep, plan.new, plan.rewinds, plan.diverged_at) == (2, (U2,), False, None)


def test_an_edited_message_rewinds_to_the_turn_before_it() -> None:
    plan = plan_history(
        [U1, A1, U2, A2],
        [
            U1,
            A1,
            Message("user", "edited"),
        ],
    )
    assert plan.keep == 2 and plan.rewinds and plan.diverged_at == 2
    assert plan.new == (Message("user", "edited"),)


def test_a_regenerated_reply_drops_it_and_its_question_then_asks_again() -> None:
    plan = plan_history([U1, A1, U2, A2], [U1, A1, U2])
    assert plan.keep == 2 and plan.new == (U2,)


def test_an_edited_reply_is_decoded_after_its_question_again() -> None:
    plan = plan_history([U1, A1], [U1, Message("assistant", "other"), U2])
    assert plan.keep == 0 and plan.new == (U1, Message("assistant", "other"), U2)


def test_a_new_conversation_under_the_same_name_starts_over() -> None:
    plan = plan_history([U1, A1, U2, A2], [U3])
    assert plan.keep == 0 and plan.new == (U3,) and plan.stored == 4


# ---------------------------------------------------------------------- gate
def stream_through(pieces: list[str], stops: tuple[str, ...]) -> tuple[str, str]:
    """What the session stores (its break and cut rules) and what the gate streams."""
    seen: list[str] = []
    gate = TextGate(stops)
    sent = []
    for piece in pieces:
        seen.append(piece)
        if stops and any(stop in "".join(seen[-8:]) for stop in stops):
            break
        sent.append(gate.push(piece))
    keep = _cut_index(stops, seen) if stops else len(seen)
    final = "".join(seen[:keep]).strip()
    sent.append(gate.finish(final))
    return final, "".join(sent)


def test_the_gate_holds_back_a_stop_that_is_still_forming() -> None:
    gate = TextGate(("\n\nUser",))
    assert gate.push(" Hello") == "Hello"
    assert gate.push(" there.\n") == ""  # "\n" may start the stop (and is whitespace)
    assert gate.push("\nUs") == ""
    assert gate.push("ually") == " there.\n\nUsually"
    assert gate.finish("Hello there.\n\nUsually more") == " more"


def test_the_streamed_text_always_equals_the_stored_reply() -> None:
    rng = random.Random(7)
    alphabet = ["a", "b", " ", "\n", "ab", "STOP", "ST", "OP", "é", "x y"]
    for _ in range(3000):
        pieces = [rng.choice(alphabet) for _ in range(rng.randint(0, 14))]
        stops = rng.choice([(), ("STOP",), ("\n\n",), ("b a", "OPx")])
        final, streamed = stream_through(pieces, stops)
        assert streamed == final, (pieces, stops)


# ---------------------------------------------------------------------- queue
def test_the_queue_is_fifo_per_session_and_round_robin_across() -> None:
    q: FairQueue[str] = FairQueue(limit=10)
    for item in ("a1", "a2", "a3"):
        q.put("a", item)
    q.put("b", "b1")
    q.put("c", "c1")
    q.put("b", "b2")
    order = [q.take(timeout=0) for _ in range(6)]
    assert order == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert q.take(timeout=0) is None


def test_a_full_queue_refuses_and_a_discarded_request_frees_its_place() -> None:
    q: FairQueue[str] = FairQueue(limit=2)
    q.put("a", "1")
    q.put("b", "2")
    with pytest.raises(QueueFull):
        q.put("c", "3")
    assert q.discard("b", "2") and not q.discard("b", "2")
    q.put("c", "3")
    assert q.depth == 2
    assert q.close() == ["1", "3"]
    with pytest.raises(QueueClosed):
        q.put("a", "4")
    started = time.monotonic()
    assert q.take(timeout=5) is None  # closed: returns at once
    assert time.monotonic() - started < 1


# ---------------------------------------------------------------------- journal
def test_the_journal_remembers_unfinished_turns_until_they_end(tmp_path: Path) -> None:
    journal = ServeJournal(tmp_path / "serve.sqlite3")
    assert journal.entry("s").pending is None and not journal.entry("s").dirty
    journal.begin("s", 4)
    journal.close()
    reopened = ServeJournal(tmp_path / "serve.sqlite3")  # as after a kill
    assert reopened.entry("s").pending == 4 and reopened.entry("s").dirty
    reopened.end("s")
    assert reopened.entry("s").pending is None and reopened.entry("s").dirty
    reopened.clean("s")
    assert not reopened.entry("s").dirty
    reopened.add_ephemeral("ask-1")
    assert reopened.ephemerals() == ["ask-1"]
    reopened.remove_ephemeral("ask-1")
    assert reopened.ephemerals() == []


# ---------------------------------------------------------------------- metrics
def test_the_metrics_are_valid_prometheus_text() -> None:
    metrics = ServeMetrics(model='odd "name"', queue_limit=8)
    metrics.request("/v1/chat/completions", 200)
    metrics.request("/v1/chat/completions", 503)
    metrics.add(prompt_decoded=30, prompt_cached=900, completion=12)
    metrics.count("evictions", 3)
    metrics.first_token(0.3)
    metrics.first_token(7.0)
    families = {f.name: f for f in text_string_to_metric_families(render(metrics.snapshot()))}
    requests = {s.labels["status"]: s.value for s in families["localctx_requests"].samples}
    assert requests == {"200": 1.0, "503": 1.0}
    tokens = {s.labels["kind"]: s.value for s in families["localctx_tokens"].samples}
    assert tokens["prompt_cached"] == 900 and tokens["completion"] == 12
    assert families["localctx_kv_evictions"].samples[0].value == 3
    ttft = {s.labels.get("le"): s.value for s in families["localctx_time_to_first_token_seconds"]
            .samples if s.name.endswith("_bucket")}  # fmt: skip
    assert ttft["0.5"] == 1 and ttft["10"] == 2 and ttft["+Inf"] == 2
    assert families["localctx_queue_limit"].samples[0].value == 8


# ---------------------------------------------------------------------- binding
def test_only_loopback_listens_without_a_key() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    check_bind("127.0.0.1", 8080, None)
    check_bind("0.0.0.0", 8080, "secret")
    with pytest.raises(LocalctxError, match="without an API key"):
        check_bind("0.0.0.0", 8080, None)
    with pytest.raises(LocalctxError, match="0-65535"):
        check_bind("127.0.0.1", 70000, None)


def test_the_http_stack_stays_out_of_the_core_and_the_cli_startup() -> None:
    code = (
        "import sys, localctx.session, localctx.oneshot, localctx.gauge, localctx.cli\n"
        "print(','.join(m for m in ('starlette', 'uvicorn', 'localctx.serve') if m in "
        "sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
