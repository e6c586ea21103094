"""The CLI contract: one JSON object with --json; one error line and a distinct exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from localctx.errors import Exit
from tests.ggufgen import write_gguf


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "localctx", *args], capture_output=True, text=True, timeout=240
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: Exit, match: str) -> None:
    assert result.returncode == int(code), (result.returncode, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("localctx: "), result.stderr
    assert match in lines[0]
    assert "Traceback" not in result.stderr


def test_help_lists_every_command() -> None:
    out = run("--help").stdout
    for command in ("chat", "ask", "ingest", "plan", "models", "memory", "bench", "where"):
        assert command in out


def test_models_list_json() -> None:
    data = json.loads(run("models", "list", "--json").stdout)
    names = {m["name"]: m for m in data["models"]}
    # The catalogue's default is the code model (the tests' LOCALCTX_MODEL picks SmolLM2).
    default = names["qwen2.5-coder-0.5b"]
    assert default["installed"] and default["default"]
    assert names["smollm2-135m"]["installed"] and not names["smollm2-135m"]["default"]


def test_models_info_gemma_json() -> None:
    data = json.loads(run("models", "info", "gemma3-270m", "--json").stdout)
    assert data["sliding_window"] == 512 and data["block_count"] == 18
    assert data["architecture"] == "gemma3" and data["head_count_kv"] == 1


def test_ask_answers_offline_on_the_default_model() -> None:
    out = run("ask", "What is the capital of France?").stdout
    assert "Paris" in out


def test_ask_json_fields() -> None:
    data = json.loads(run("ask", "What is the capital of France?", "--json").stdout)
    assert "Paris" in data["answer"]
    assert data["prompt_tokens"] > 10 and data["completion_tokens"] > 0
    assert data["prefill_tps"] > 0 and data["decode_tps"] > 0
    assert data["model"]


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (("ask", "q", "--model", "no-such-model"), Exit.MODEL_NOT_FOUND, "unknown model"),
        (("ask", "q", "--model", "/nonexistent/x.gguf"), Exit.MODEL_NOT_FOUND, "not found"),
        (("ask", "q", "--kv", "q3_z"), Exit.BAD_KV_SETTING, "unknown KV cache type"),
        (("ask", "q", "--ctx", "65536"), Exit.CONTEXT_TOO_LARGE, "--force"),
        (("models", "info", "nope"), Exit.MODEL_NOT_FOUND, "unknown model"),
        (("models", "pull", "nope"), Exit.MODEL_NOT_FOUND, "unknown model"),
    ],
)
def test_bad_input_gives_one_line_and_its_exit_code(
    args: tuple[str, ...], code: Exit, match: str
) -> None:
    assert_one_line_error(run(*args, ok=False), code, match)


def test_not_gguf_and_truncated_files(tmp_path: Path, smollm_path: Path) -> None:
    text = tmp_path / "readme.gguf"
    text.write_text("not a model")
    assert_one_line_error(
        run("ask", "q", "--model", str(text), ok=False), Exit.BAD_MODEL_FILE, "not a GGUF"
    )
    cut = tmp_path / "cut.gguf"
    with smollm_path.open("rb") as src:
        cut.write_bytes(src.read(50_000_000))
    assert_one_line_error(
        run("models", "info", str(cut), ok=False), Exit.BAD_MODEL_FILE, "truncated"
    )


def test_kv_block_size_must_divide_head_dim(tmp_path: Path) -> None:
    odd = write_gguf(tmp_path / "odd.gguf", embd=400, heads=5, kv_heads=5)  # head dim 80
    result = run("ask", "q", "--model", str(odd), "--kv", "q8_0", ok=False)
    assert_one_line_error(result, Exit.BAD_KV_SETTING, "block size 32 must divide")


def test_force_above_trained_context_warns() -> None:
    result = run("ask", "Say hi.", "--ctx", "9000", "--force", "--max-tokens", "4", "--json")
    assert "RoPE scaling is in effect" in result.stderr
    assert json.loads(result.stdout)["n_ctx"] >= 9000
