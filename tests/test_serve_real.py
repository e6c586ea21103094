"""`localctx serve` with the real model (SmolLM2-135M), over real HTTP on loopback.

The server runs as `python -m localctx serve` in a child process with its own home, one
thread (the machine is shared), as users run it. Checked: the official `openai` package gets
the same greedy answer as `localctx ask`, streamed and not; a 40-turn conversation whose client
resends the whole history decodes only each new turn, stays within its window and recalls a
fact from turn 1 at turn 40; sessions never see each other's memory; a stateless request
leaves nothing stored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localctx.memory.recall import RecallStore
from tests.serving import ServerProcess

pytestmark = pytest.mark.real
QUESTION = "What is the capital of France?"
TOPICS = [
    "rivers", "mountains", "bread", "trains", "violins", "glaciers", "tea", "owls", "bridges",
    "comets", "tulips", "chess", "copper", "deserts", "harbors", "lanterns", "maple trees",
    "pottery", "tides", "weaving", "volcanoes", "kites", "penguins", "clocks", "salt",
    "honey", "caves", "sailing", "marble", "fog", "orchards", "canals", "ink", "wolves",
    "quartz", "lighthouses", "bamboo", "thunder",
]  # fmt: skip


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "server-home", "--ctx", "1024", "--window", "256").start()
    try:
        yield srv
    finally:
        srv.stop()


def rows(home: Path, name: str) -> list[tuple[str, str]]:
    with RecallStore(home / "db" / "recall.sqlite3") as store:
        if not store.session_exists(name):
            return []
        return [(r, c) for _, r, c in store.messages(store.session_id(name))]


def recalled_text(reply: dict[str, Any]) -> str:
    return " ".join(item["text"] for item in reply["localctx"]["recalled"])


def test_the_openai_client_gets_the_answer_ask_gives(tmp_path: Path) -> None:
    from openai import OpenAI

    ask = subprocess.run(
        [sys.executable, "-m", "localctx", "ask", QUESTION, "--json", "--max-tokens", "32",
         "--threads", "1"],
        capture_output=True, text=True, timeout=120,
        env=os.environ | {"LOCALCTX_HOME": str(tmp_path / "ask-home")},
    )  # fmt: skip
    assert ask.returncode == 0, ask.stderr
    expected = json.loads(ask.stdout)["answer"]
    assert expected

    srv = ServerProcess(tmp_path / "server-home").start()  # the planner's defaults, as `ask`
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key="unused")
        assert "smollm2-135m" in [m.id for m in client.models.list().data]
        whole = client.chat.completions.create(
            model="smollm2-135m",
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=32,
            temperature=0,
        )
        assert whole.choices[0].message.content == expected
        assert whole.usage is not None and whole.usage.completion_tokens > 0
        stream = client.chat.completions.create(
            model="smollm2-135m",
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=32,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage = [], None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        assert "".join(pieces) == expected
        assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens
    finally:
        assert srv.stop() == 0, srv.log
    assert "every session's context was saved" in srv.log


def test_forty_turns_resent_whole_decode_only_the_new_turn_and_recall_turn_one(
    server: ServerProcess,
) -> None:
    client = server.client()
    history: list[dict[str, str]] = []
    turns: list[dict[str, Any]] = []
    messages = ["Please remember this: my locker code is 7291."]
    messages += [f"{topic.capitalize()}." for topic in TOPICS]  # no shared words: no recall
    messages.append("What is my locker code?")
    assert len(messages) == 40
    for text in messages:
        history.append({"role": "user", "content": text})
        reply = client.chat({"messages": history, "user": "long", "max_tokens": 4})
        assert reply.status == 200, reply.body
        turns.append(reply.body)
        history.append(reply.body["choices"][0]["message"])

    window = 256
    for i, turn in enumerate(turns):
        ext, usage = turn["localctx"], turn["usage"]
        assert ext["kv"]["cells_used"] <= window
        assert ext["history"]["stored"] == 2 * i and ext["history"]["rewound"] is None
        if i:  # only the new message (and what recall adds for it) was decoded
            recalled = sum(len(item["text"]) for item in ext["recalled"]) // 3 + 32
            assert ext["decoded_prompt_tokens"] <= 32 + recalled, (i, ext)
            assert usage["prompt_tokens_details"]["cached_tokens"] > 0
    resent = sum(len(json.dumps(t)) for t in history) // 4  # ~tokens the client sent last turn
    assert resent > 2 * window  # the history outgrew the window many times over
    assert turns[-1]["localctx"]["kv"]["evictions"] > 0
    assert "7291" in recalled_text(turns[-1])
    metrics = client.metrics()
    held = sum(v for k, v in metrics.items() if k[0] == "localctx_kv_cells" and
               dict(k[1])["region"] != "free")  # fmt: skip
    assert held <= window
    assert metrics[("localctx_kv_evictions_total", ())] > 0
    decoded = metrics[("localctx_tokens_total", (("kind", "prompt_decoded"),))]
    cached = metrics[("localctx_tokens_total", (("kind", "prompt_cached"),))]
    assert cached > decoded  # most of every prompt was already in the cache


def test_sessions_never_see_each_other_and_stateless_requests_leave_nothing(
    server: ServerProcess,
) -> None:
    client = server.client()
    filler = (
        "Tell me about the weather in the mountains, the long walks along the river, the old "
        "stone bridges, the markets on Sunday mornings and the bakeries that open at dawn. "
    ) * 2

    def converse(name: str, fact: str) -> dict[str, Any]:
        history: list[dict[str, str]] = []
        for text in [f"Remember: the vault password is {fact}.", filler, filler + "Again.",
                     filler + "Once more.", "What is the vault password?"]:  # fmt: skip
            history.append({"role": "user", "content": text})
            reply = client.chat({"messages": history, "max_tokens": 4},
                                headers={"X-Localctx-Session": name}).body  # fmt: skip
            history.append(reply["choices"][0]["message"])
        return reply

    a = converse("alpha", "heron-1111")
    b = converse("beta", "falcon-2222")
    assert a["localctx"]["kv"]["evictions"] > 0 and b["localctx"]["kv"]["evictions"] > 0
    assert "heron-1111" in recalled_text(a) and "falcon" not in recalled_text(a)
    assert "falcon-2222" in recalled_text(b) and "heron" not in recalled_text(b)

    stateless = client.chat(
        {"messages": [{"role": "user", "content": "What is the vault password?"}],
         "max_tokens": 4}
    ).body  # fmt: skip
    assert stateless["localctx"]["session"] is None
    assert "heron" not in recalled_text(stateless) and "falcon" not in recalled_text(stateless)
    with RecallStore(server.home / "db" / "recall.sqlite3") as store:
        assert store.counts()["messages"] == 20  # alpha's 10 and beta's 10: nothing stateless
    assert len(rows(server.home, "alpha")) == 10
