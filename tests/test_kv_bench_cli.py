"""`localctx bench ppl` / `bench kv`: the JSON shapes, and each bad input as one clear error
with its exit code and nothing on stdout (no partial result)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from localctx.cli import main
from localctx.errors import Exit
from localctx.models.ggufmeta import read_gguf

DATA = Path(__file__).parent / "data"
PROSE = str(DATA / "devils-dictionary-excerpt.txt")


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["bench", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.real
def test_bench_ppl_json(smollm_path: Path) -> None:
    code, out, err = _run(
        "ppl", "--model", str(smollm_path), "--text", PROSE, "--tokens", "120",
        "--window", "48", "--chunk", "16", "--threads", "1", "--json",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert {"ppl", "tokens", "window", "sinks", "kv", "peak_cells", "evictions", "seconds"} <= set(
        data
    )
    assert data["tokens"] == 120 and data["window"] == 48 and data["sinks"] == 4
    assert data["peak_cells"] <= 48 and data["evictions"] >= 2
    assert 1 < data["ppl"] < 1000


@pytest.mark.real
def test_bench_ppl_full_json(smollm_path: Path) -> None:
    code, out, err = _run(
        "ppl", "-m", str(smollm_path), "--text", PROSE, "--tokens", "80", "--full",
        "--threads", "1", "--json",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["window"] is None and data["evictions"] == 0 and data["peak_cells"] == 80


@pytest.mark.real
def test_bench_kv_json(smollm_path: Path) -> None:
    code, out, err = _run(
        "kv", "-m", str(smollm_path), "--text", PROSE, "--tokens", "16",
        "--types", "f16,q8_0", "--threads", "1", "--json",
    )  # fmt: skip
    assert code == 0, err
    types = json.loads(out)["types"]
    assert set(types) == {"f16", "q8_0"}
    fields = {
        "bytes_per_token", "prefill_tps", "decode_tps", "evict_ms", "reprefill_ms",
        "state_save_ms", "state_load_ms", "cold_prefill_ms",
    }  # fmt: skip
    for figures in types.values():
        assert fields <= set(figures)
        assert all(figures[f] > 0 for f in fields)
    assert types["q8_0"]["bytes_per_token"] / types["f16"]["bytes_per_token"] == pytest.approx(
        34 / 64, abs=0.002
    )


@pytest.mark.real
def test_bench_kv_stream_json(smollm_path: Path) -> None:
    code, out, err = _run(
        "kv", "-m", str(smollm_path), "--text", PROSE, "--stream", "200", "--window", "64",
        "--threads", "1", "--json",
    )  # fmt: skip
    assert code == 0, err
    stream = json.loads(out)["stream"]
    assert stream["peak_cells"] <= 64 and max(stream["cells_used_samples"]) <= 64
    assert stream["evicted_tokens"] == 200 - stream["cells_used_samples"][-1]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--window", "40", "--sinks", "4"), Exit.BAD_INPUT, "smaller than 4 sinks + one batch"),
        (("--sinks", "-1"), Exit.BAD_INPUT, "--sinks must be 0 or more"),
        (("--kv", "q3_k"), Exit.BAD_KV_SETTING, "unknown KV cache type"),
        (("--tokens", "1"), Exit.BAD_INPUT, "--tokens must be at least 2"),
    ],
)
def test_bench_ppl_bad_settings(
    smollm_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    exit_code, out, err = _run("ppl", "-m", str(smollm_path), "--text", PROSE, *args)
    assert exit_code == code
    assert out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"   \n\n  ", "is empty"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00binary", "looks binary"),
        (b"\xff\xfe\xfa not utf-8", "not UTF-8"),
        (b"Far too short a text.", "fewer than the 3000 asked for"),
    ],
)
def test_bench_ppl_bad_text(smollm_path: Path, tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "text.txt"
    path.write_bytes(content)
    exit_code, out, err = _run("ppl", "-m", str(smollm_path), "--text", str(path), "--json")
    assert exit_code == Exit.BAD_INPUT
    assert out == ""
    assert message in err and "Traceback" not in err


def test_bench_ppl_missing_text(smollm_path: Path, tmp_path: Path) -> None:
    exit_code, out, err = _run("ppl", "-m", str(smollm_path), "--text", str(tmp_path / "no.txt"))
    assert exit_code == Exit.BAD_INPUT and out == "" and "cannot read" in err


def test_a_kv_type_the_model_cannot_take(
    smollm_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A head dim the type's block (32) does not divide is refused before anything loads."""
    meta = replace(read_gguf(smollm_path), key_length=80, value_length=80)
    monkeypatch.setattr("localctx.bench.ppl.read_gguf", lambda _path: meta)
    monkeypatch.setattr("localctx.bench.kv.read_gguf", lambda _path: meta)
    for args in (("ppl", "--kv", "q8_0"), ("kv", "--types", "f16,q4_0")):
        exit_code, out, err = _run(args[0], "-m", str(smollm_path), "--text", PROSE, *args[1:])
        assert exit_code == Exit.BAD_KV_SETTING, err
        assert out == "" and "head dim 80" in err


def test_bench_kv_unknown_type(smollm_path: Path) -> None:
    exit_code, out, err = _run("kv", "-m", str(smollm_path), "--text", PROSE, "--types", "f17")
    assert exit_code == Exit.BAD_KV_SETTING and out == "" and "unknown KV cache type" in err
