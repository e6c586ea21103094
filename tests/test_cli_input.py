"""Bad input on the command line (issue #14, cases 7, 8 and 9): one line, a distinct exit code,
nothing stored, never a traceback; and questions longer than an argument may be.

Values are checked before the model loads, so most of these cost one interpreter start.
"""

from __future__ import annotations

import json
import struct
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from localctx.errors import Exit
from tests.clirun import cli, one_line_error
from tests.hostile import Hostile, event, hostile, start_stream


def stored() -> dict[str, int]:
    out = cli("memory", "stats", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    return {"sessions": data["sessions"], "messages": data["messages"]}


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (("ask", "q", "--threads", "0"), Exit.BAD_INPUT, "--threads must be at least 1"),
        (("ask", "q", "--threads", "-1"), Exit.BAD_INPUT, "--threads must be at least 1"),
        (("ask", "q", "--threads", "100000"), Exit.BAD_INPUT, "--threads must be at most 512"),
        (("ask", "q", "--max-tokens", "-1"), Exit.BAD_INPUT, "--max-tokens must be at least 1"),
        (("ask", "q", "--max-tokens", "0"), Exit.BAD_INPUT, "--max-tokens must be at least 1"),
        (("ask", "q", "--temperature", "-1"), Exit.BAD_INPUT, "--temperature must be"),
        (("ask", "q", "--gpu-layers", "-2"), Exit.BAD_INPUT, "--gpu-layers must be at least -1"),
        (("ask", "q", "--kv", ""), Exit.BAD_KV_SETTING, "--kv needs a cache type"),
        (("ask", "q", "--rpc", ""), Exit.BAD_INPUT, "--rpc needs a value"),
        (("ask", "q", "--model", ""), Exit.BAD_INPUT, "--model needs a value"),
        (("ask", "q", "--session", ""), Exit.BAD_INPUT, "--session needs a value"),
        (("ask", "q", "--session", "   "), Exit.BAD_INPUT, "--session needs a value"),
        (("ask", ""), Exit.BAD_INPUT, "nothing to ask: the question is empty"),
        (("ask", " \n\t "), Exit.BAD_INPUT, "nothing to ask: the question is empty"),
        (("ask",), Exit.USAGE, "missing the question"),
        (("ask", "q", "--file", "x", "--session", "s"), Exit.BAD_INPUT, "not both"),
        (("ask", "q", "--repo", "/nonexistent/repo"), Exit.BAD_INPUT, "does not exist"),
        (("ask", "q", "--threads", "many"), Exit.USAGE, "'many' is not a whole number"),
        (("chat", "--threads", "0"), Exit.BAD_INPUT, "--threads must be at least 1"),
        (("chat", "--repo", "/nonexistent/repo"), Exit.BAD_INPUT, "no such path"),
        (("chat", "--session", ""), Exit.BAD_INPUT, "--session needs a value"),
        (("ingest", ""), Exit.BAD_INPUT, "PATH needs a value"),
        (("--no-such-flag",), Exit.USAGE, "No such option"),
    ],
)
def test_bad_values_are_one_line_and_store_nothing(
    args: tuple[str, ...], code: Exit, match: str
) -> None:
    one_line_error(cli(*args), code, match)
    assert stored() == {"sessions": 0, "messages": 0}


def test_ask_repo_that_is_a_file_is_bad_input(tmp_path: Path) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    one_line_error(cli("ask", "q", "--repo", str(afile)), Exit.BAD_INPUT, "is a file")


def test_text_that_is_not_utf8_is_bad_input_and_leaves_no_session_row(tmp_path: Path) -> None:
    bad = b"caf\xe9 au lait?"  # Latin-1, as a shell in another locale passes it
    arg = bad.decode("utf-8", "surrogateescape")
    line = one_line_error(cli("ask", arg, "--session", "s"), Exit.BAD_INPUT, "not valid UTF-8")
    assert "0xe9" in line
    one_line_error(cli("ask", "q", "--session", arg), Exit.BAD_INPUT, "not valid UTF-8")
    one_line_error(cli("ask", "-", "--session", "s", input=bad), Exit.BAD_INPUT, "not UTF-8")
    qfile = tmp_path / "q.txt"
    qfile.write_bytes(bad)
    one_line_error(cli("ask", "--file", str(qfile)), Exit.BAD_INPUT, "not UTF-8 text")
    assert stored() == {"sessions": 0, "messages": 0}


def test_random_bytes_in_a_gguf_header_are_a_bad_model_file(
    tmp_path: Path, smollm_path: Path
) -> None:
    data = bytearray(smollm_path.read_bytes()[: 4 << 20])
    at = data.find(b"tokenizer.ggml.tokens") + len(b"tokenizer.ggml.tokens") + 16
    struct.pack_into("<Q", data, at, 0x7FFFFFFFFFFFFFF0)  # a token's length: a bogus seek
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(bytes(data))
    for args in (("models", "info", str(bogus)), ("ask", "q", "--model", str(bogus))):
        one_line_error(cli(*args), Exit.BAD_MODEL_FILE, "not a readable GGUF")


def test_a_metadata_value_of_the_wrong_type_is_a_bad_model_file(tmp_path: Path) -> None:
    from tests.ggufgen import write_gguf

    path = write_gguf(tmp_path / "odd.gguf", extra={"llama.attention.key_length": "wide"})
    one_line_error(cli("models", "info", str(path)), Exit.BAD_MODEL_FILE, "unusable metadata")


def echo_tail(handler: BaseHTTPRequestHandler, server: Hostile) -> None:
    """Answers with the last 40 characters of the last user message it was sent."""
    start_stream(handler)
    tail = server.requests[-1]["messages"][-1]["content"][-40:]
    handler.wfile.write(event(tail) + b"data: [DONE]\n\n")


def test_ask_reads_a_question_longer_than_an_argument_from_stdin_or_a_file(
    tmp_path: Path,
) -> None:
    long = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(4000))
    long += "and the last line asks: what is the code?"
    assert len(long.encode()) > 128 * 1024  # over Linux's cap on one argument
    qfile = tmp_path / "question.txt"
    qfile.write_text(long)
    with hostile(echo_tail) as server:
        piped = cli("ask", "-", "--remote", server.url, "--session", "big", "--json", input=long)
        assert piped.returncode == 0, piped.stderr
        assert json.loads(piped.stdout)["answer"] == long[-40:]
        from_file = cli("ask", "--file", str(qfile), "--remote", server.url, "--json")
        assert from_file.returncode == 0, from_file.stderr
        assert json.loads(from_file.stdout)["answer"] == long[-40:]
    out = cli("memory", "export", "--json")
    items = json.loads(out.stdout)["items"]
    questions = [i["text"] for i in items if i["kind"] == "message" and i["role"] == "user"]
    assert questions == [long]  # stored whole (the named session only)


def test_ask_dash_answers_from_stdin_with_the_real_model() -> None:
    out = cli(
        "ask", "-", "--max-tokens", "12", "--threads", "1", input="What is the capital of France?"
    )
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout
