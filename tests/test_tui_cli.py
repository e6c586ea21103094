"""`localctx chat` bad input: one line on stderr and a distinct exit code, before any screen."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from localctx.cli import main
from localctx.errors import Exit


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["chat", "--repo", "/no/such/dir"], Exit.BAD_INPUT, "--repo /no/such/dir: no such path"),
        (["chat", "--window", "0"], Exit.BAD_INPUT, "--window must be a positive"),
        (["chat", "--model", "no-such-model"], Exit.MODEL_NOT_FOUND, "unknown model"),
        (["chat", "--kv", "q3_z"], Exit.BAD_KV_SETTING, "unknown KV cache type"),
        (["chat"], Exit.USAGE, "the chat app needs a terminal"),
        ([], Exit.USAGE, "the chat app needs a terminal"),
    ],
)
def test_chat_refuses_bad_input_with_one_line(args: list[str], code: int, text: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("localctx: ") and text in lines[0]


def test_chat_refuses_a_file_as_repo(tmp_path: Path) -> None:
    file = tmp_path / "a.txt"
    file.write_text("x")
    result = CliRunner().invoke(main, ["chat", "--repo", str(file)])
    assert result.exit_code == Exit.BAD_INPUT and "not a directory" in result.output
