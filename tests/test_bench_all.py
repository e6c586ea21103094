"""`localctx bench all`: the plan, the fair comparison's mechanics, the report, the CLI contract.

Speeds are never asserted (a shared 2-core machine); shapes, bounds and behaviour are: both
runners must produce the same greedy tokens, a restored snapshot must be the prompt's, the JSON
must carry the headline keys, a missing area must be "not available", not a crash.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from localctx.bench import raw, report, suite
from localctx.engine import EngineSettings
from localctx.errors import BadInput

DATA = Path(__file__).parent / "data"
TEXT = DATA / "devils-dictionary-excerpt.txt"


# ------------------------------------------------------------------ the plan (pure)
def test_plan_default_quick_and_model_choice() -> None:
    trained = {"smollm2-135m": 8192, "gemma3-270m": 32768}
    quick = suite.plan_speed_runs(quick=True, model=None, trained=trained)
    assert [(r.model, r.n_ctx) for r in quick] == [("smollm2-135m", 512), ("smollm2-135m", 4096)]
    full = suite.plan_speed_runs(quick=False, model=None, trained=trained)
    assert [(r.model, r.n_ctx) for r in full][-1] == ("gemma3-270m", 16384)
    assert sum(r.warm_reps > 0 for r in full) == 1 and full[1].n_ctx == 4096
    only_small = suite.plan_speed_runs(quick=False, model=None, trained={"smollm2-135m": 8192})
    assert max(r.n_ctx for r in only_small) == 4096  # 16K only on a model trained for it
    gemma = suite.plan_speed_runs(quick=False, model="gemma3-270m", trained=trained)
    assert {r.model for r in gemma} == {"gemma3-270m"}
    with pytest.raises(BadInput, match="not installed"):
        suite.plan_speed_runs(quick=True, model="nope", trained=trained)
    with pytest.raises(BadInput, match="below 512"):
        suite.plan_speed_runs(quick=True, model="tiny", trained={"tiny": 256})


def test_interleaving_helpers() -> None:
    assert [raw.pair_order(i)[0] for i in range(4)] == ["localctx", "raw", "localctx", "raw"]
    assert raw.prompt_from_text([1, 2, 3], 7, offset=1) == [2, 3, 1, 2, 3, 1, 2]
    assert raw.ratio(1.0, 0.0) == 0.0 and raw.ratio(3.0, 2.0) == 1.5


# ------------------------------------------------------------------ sections
def test_sections_skip_in_quick_and_report_missing_or_failing_modules() -> None:
    args = suite.SectionArgs(TEXT, TEXT, "x", True, 1, Path("."), lambda _m: None)
    slow = suite.Section("x", "x", "localctx.bench.kv", lambda _a: {})
    assert "skipped in --quick" in suite.run_section(slow, args)["note"]
    full = suite.SectionArgs(TEXT, TEXT, "x", False, 1, Path("."), lambda _m: None)
    missing = suite.Section("y", "y", "localctx.bench.not_a_module", lambda _a: {})
    assert suite.run_section(missing, full) == {
        "available": False,
        "note": "not available: localctx.bench.not_a_module is not built",
    }

    def broken(_a: suite.SectionArgs) -> dict[str, Any]:
        raise RuntimeError("boom")

    failing = suite.Section("z", "z", "localctx.bench.raw", broken)
    assert suite.run_section(failing, full)["note"] == "failed: RuntimeError: boom"
    ok = suite.Section("w", "w", "localctx.bench.raw", lambda _a: {"figure": 1})
    assert suite.run_section(ok, full)["figure"] == 1


# ------------------------------------------------------------------ report (pure + charts)
def _result() -> dict[str, Any]:
    point = {
        "model": "smollm2-135m", "n_ctx": 4096, "type_k": "f16", "prompt_tokens": 4063,
        "decode_tokens": 32, "localctx_prefill_tps": 100.0, "raw_prefill_tps": 99.0,
        "localctx_decode_tps": 30.0, "raw_decode_tps": 30.3, "prefill_ratio": 1.01,
        "decode_ratio": 0.99, "prefill_pairs": 8, "outputs_match": True,
        "cold_prefill_seconds": 40.0, "first_sample_seconds": 0.001, "peak_rss_bytes": 2**28,
    }  # fmt: skip
    warm = {
        "prefix_tokens": 4063, "snapshot_bytes": 2**26, "file_bytes": 2**26 + 10,
        "state_get_seconds": 0.02, "restore_seconds": 0.04, "save_file_seconds": 0.03,
        "load_file_seconds": 0.02, "cold_prefill_seconds": 40.0, "warm_speedup": 1000.0,
        "warm_speedup_from_file": 2000.0, "ttft_warm_seconds": 0.1, "reps": 5,
    }  # fmt: skip
    ppl_rows = [
        {"window": w, "sinks": s, "ppl": 15.0 + (0 if s else 10) - w / 1000}
        for w in (256, 512)
        for s in (4, 0)
    ]
    return {
        "quick": False,
        "machine": {"cpu": "test cpu", "cores": 2, "ram_bytes": 2**34},
        "backend": {"backend": "cpu", "n_threads": 2},
        "speed": [point],
        "warm": warm,
        "prefill_ratio": 1.01,
        "decode_ratio": 0.99,
        "warm_speedup": 1000.0,
        "memory": {"model": "m", "rows": [{"kv": "f16", "ctx": 512, "kv_bytes": 2**20}]},
        "sections": {
            "perplexity": {"available": True, "rows": [{"window": None, "ppl": 15}, *ppl_rows]},
            "needle": {"available": False, "note": "not available: x"},
        },
        "peak_rss_bytes": 2**29,
    }


def test_markdown_report_has_headline_tables_and_notes() -> None:
    md = report.markdown(_result())
    assert "| prefill_ratio | 1.010 | ≥ 0.97 |" in md
    assert "| warm_speedup (cold prefill / snapshot restore) | 1,000x | ≥ 100x |" in md
    assert "| smollm2-135m | 4096 | f16 | 4063 |" in md
    assert "- **needle**: not available: x" in md
    assert "Machine: test cpu, 2 cores, 16.0 GiB RAM" in md


def test_ppl_series_groups_sinks_and_skips_the_full_run() -> None:
    series = report.ppl_series(_result()["sections"])
    assert set(series) == {"4 sinks", "no sinks"}
    assert [w for w, _ in series["4 sinks"]] == [256, 512]


def test_charts_without_matplotlib_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError
    out = report.write_outputs(_result(), tmp_path)
    assert out["charts"] == []
    assert "matplotlib is not installed" in out["charts_note"]
    assert "matplotlib is not installed" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "bench.json").read_text())["prefill_ratio"] == 1.01


def test_charts_with_matplotlib(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is the optional `bench` extra")
    out = report.write_outputs(_result(), tmp_path)
    names = sorted(Path(p).name for p in out["charts"])
    assert names == ["memory_vs_context.png", "ppl_vs_window.png", "ttft_cold_vs_warm.png"]
    for p in out["charts"]:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ the CLI contract
def test_cli_json_is_one_object_with_the_headline_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from localctx.cli import bench_all as cli

    seen: dict[str, Any] = {}

    def fake_suite(**kwargs: Any) -> dict[str, Any]:
        seen.update(kwargs)
        return _result()

    monkeypatch.setattr(cli, "run_suite", fake_suite)
    result = CliRunner().invoke(
        cli.bench_all, ["--quick", "--json", "--out", str(tmp_path), "--text", str(TEXT)]
    )
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)
    assert {"prefill_ratio", "decode_ratio", "warm_speedup", "speed", "sections"} <= set(obj)
    assert seen["quick"] is True and seen["text_path"] == TEXT
    assert (tmp_path / "report.md").is_file() and (tmp_path / "bench.json").is_file()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--text", "/nonexistent/prose.txt"], 9, "cannot read the benchmark text"),
        (["--text", str(DATA / "README.md")], 9, "too short"),
        (["--threads", "0"], 9, "--threads must be at least 1"),
        (["--model", "no-such-model"], 3, "no-such-model"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(args: list[str], code: int, message: str) -> None:
    cmd = [sys.executable, "-m", "localctx", "bench", "all", "--quick", *args]
    if "--text" not in args:
        cmd += ["--text", str(TEXT)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == code, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("localctx:")]
    assert len(errors) == 1 and message in errors[0], out.stderr


# ------------------------------------------------------------------ against the real model
@pytest.mark.real
def test_side_by_side_on_the_real_model(smollm_path: Path) -> None:
    """Both runners on SmolLM2 at 256: same greedy tokens, every figure measured, a restored
    snapshot holds exactly the prompt. One thread: 2 OpenMP threads on a busy 2-core machine
    stall at every graph barrier."""
    settings = EngineSettings(model_path=smollm_path, n_ctx=256, n_threads=1)
    point = raw.compare(
        settings, TEXT.read_text(), decode_tokens=4, prefill_reps=2, warm_reps=1
    ).to_json()
    assert point["outputs_match"] is True
    assert point["prompt_tokens"] == 256 - 4 - 1 and point["decode_tokens"] == 4
    assert point["prefill_pairs"] == 2  # one chunk per rep
    for key in ("localctx_prefill_tps", "raw_prefill_tps", "localctx_decode_tps",
                "raw_decode_tps", "prefill_ratio", "decode_ratio"):  # fmt: skip
        assert point[key] > 0, key
    warm = point["warm"]
    assert warm["prefix_tokens"] == point["prompt_tokens"]
    # f16 KV for 251 tokens: 30 layers x 3 heads x 64 dims x 2 (K, V) x 2 bytes = 23,040 B each.
    assert warm["snapshot_bytes"] >= 251 * 23040
    assert warm["file_bytes"] >= warm["snapshot_bytes"]
    assert warm["restore_seconds"] > 0 and warm["ttft_warm_seconds"] > 0


def test_section_summaries_name_the_figures_that_matter() -> None:
    eviction = {"tokens": 1000, "types": {"f16": {"evict_ms": 51.5, "reprefill_ms": 9618.5}}}
    assert report.section_summary("eviction", eviction) == (
        "f16: evict 51.5 ms vs re-prefill 9618.5 ms of 1000 tokens"
    )
    ppl = report.section_summary("perplexity", _result()["sections"]["perplexity"] | {"tokens": 9})
    assert ppl.startswith("9 tokens; full cache None; 4 sinks: w256 14.74, w512 14.49")
    gauge = {"throughput_overhead_pct": 1.6, "cpu_overhead_pct": -3.3, "other": 1}
    assert (
        report.section_summary("gauge", gauge)
        == "throughput_overhead_pct 1.6, cpu_overhead_pct -3.3"
    )
