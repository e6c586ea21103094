"""`localctx bench serve` runs end to end on the real model, bounded, and reports every figure.

Figures are measured, never asserted: this checks the shape, that the run stopped by itself
after clients x turns requests, that nothing failed below the queue limit, and that it left
no file in the user's home (the server ran in a throwaway one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.real


def test_bench_serve_reports_throughput_latency_memory_and_overhead(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run = subprocess.run(
        [sys.executable, "-m", "localctx", "bench", "serve", "--clients", "2", "--turns", "2",
         "--max-tokens", "8", "--rounds", "1", "--overhead-tokens", "16", "--threads", "1",
         "--json"],
        capture_output=True, text=True, timeout=300,
        env=os.environ | {"LOCALCTX_HOME": str(home)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert (report["requests"], report["errors"], report["stopped_by_timeout"]) == (4, 0, False)
    assert report["requests_per_second"] > 0 and report["tokens_per_second"] > 0
    assert 0 < report["ttft_p50_seconds"] <= report["ttft_p99_seconds"]
    assert report["server_peak_rss_bytes"] > 50 * 2**20  # a model was loaded over there
    assert report["cached_prompt_tokens_mean"] > 0  # second turns reused their history
    overhead = report["overhead"]
    assert overhead["completion_tokens"] >= 2
    assert overhead["ask_decode_tps"] > 0 and overhead["http_decode_tps"] > 0
    assert isinstance(overhead["overhead"], float)
    assert report["machine"]["cores"] >= 1
    assert not (home / "db").exists()  # the benchmark kept to its throwaway home


def test_bench_serve_refuses_impossible_sizes() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "localctx", "bench", "serve", "--clients", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    assert "--clients" in run.stderr
