"""The gauge: readings from the engine, a window policy, psutil and the stores on disk.

Fake-engine tests pin the arithmetic and the thread-safety contract; real-model tests read
the gauge while llama.cpp generates, and prove sampling never calls into llama.cpp.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from localctx import paths
from localctx.engine import EngineSettings, Sampling, load_engine
from localctx.engine.base import KvAllocation
from localctx.engine.fake import FakeEngine
from localctx.errors import EngineFailed
from localctx.gauge import GaugeReading, GaugeSampler
from localctx.gauge import sampler as sampler_mod
from localctx.gauge.sampler import cache_sizes, used_bytes

DATA = Path(__file__).parent / "data"
GEMMA_LINES = (
    "llama_kv_cache: size =   24.00 MiB (  8192 cells,   3 layers,  1/1 seqs), "
    "K (f16):   12.00 MiB, V (f16):   12.00 MiB",
    "llama_kv_cache: size =   15.00 MiB (  1024 cells,  15 layers,  1/1 seqs), "
    "K (f16):    7.50 MiB, V (f16):    7.50 MiB",
)


def test_a_reading_without_policy_counts_held_cells_as_window() -> None:
    engine = FakeEngine(bytes_per_token=1000)
    sampler = GaugeSampler(engine)
    engine.decode(list(b"hello world"))
    engine.enqueue("abc")
    list(engine.generate(Sampling(max_tokens=8)))
    r = sampler.sample()
    assert isinstance(r, GaugeReading)
    assert r.kv.cells_used == 14 and r.kv.n_ctx == 4096
    assert r.kv.regions == {"sink": 0, "pinned": 0, "recalled": 0, "window": 14, "free": 4082}
    assert r.kv.total_bytes == 4096 * 1000 and r.kv.used_bytes == 14 * 1000
    assert r.kv.bytes_per_token == 1000 and r.kv.window is None and r.kv.evictions == 0
    assert r.decode_tokens == 3 and r.decode_tps > 0 and r.prefill_tokens == 11
    assert r.rss_bytes > 0 and 0 < r.ram.used_bytes < r.ram.total_bytes
    assert r.vram is None and r.unified_memory is None  # no GPU backend
    assert r.backend == "fake" and r.layers_offloaded == 0
    json.dumps(r.to_json())  # JSON-ready


@dataclass(frozen=True)
class Stats:
    cells_used: int = 300
    window: int = 512
    n_sink: int = 4
    pinned: int = 60
    recalled: int = 36
    window_cells: int = 200
    free: int = 212
    evictions: int = 3
    tokens_seen: int = 1500
    evicted_tokens: int = 1200
    bytes_per_token: float = 23040.0
    fallback_used: bool = False
    policy: str = "keynorm"
    gaps: int = 5


class StubPolicy:
    @property
    def regions(self) -> dict[str, tuple[int, int]]:
        return {"sink": (0, 4), "pinned": (4, 64), "recalled": (64, 100), "window": (64, 300)}

    def stats(self) -> Stats:
        return Stats()


def test_a_window_policy_supplies_regions_and_evictions() -> None:
    r = GaugeSampler(FakeEngine(), StubPolicy()).sample()
    assert r.kv.regions == {"sink": 4, "pinned": 60, "recalled": 36, "window": 200, "free": 212}
    assert (r.kv.evictions, r.kv.evicted_tokens, r.kv.tokens_seen) == (3, 1200, 1500)
    assert r.kv.window == 512 and r.kv.bytes_per_token == 23040.0
    assert (r.kv.policy, r.kv.gaps) == ("keynorm", 5)
    assert r.to_json()["kv"]["spans"]["pinned"] == [4, 64]


class FlakyPolicy(StubPolicy):
    """Trips the policy's consistency check `fails` times, as a mid-append read would."""

    def __init__(self, fails: int) -> None:
        self.fails = fails

    def stats(self) -> Stats:
        if self.fails:
            self.fails -= 1
            raise EngineFailed("the sink window needs a contiguous cache")
        return Stats()


def test_a_transient_policy_mismatch_is_read_again_but_a_lasting_one_raises() -> None:
    assert GaugeSampler(FakeEngine(), FlakyPolicy(1)).sample().kv.evictions == 3
    with pytest.raises(EngineFailed):
        GaugeSampler(FakeEngine(), FlakyPolicy(2)).sample()


def test_swa_caches_bound_the_used_bytes() -> None:
    alloc = KvAllocation(40894464, 0, 0, (8192, 1024), GEMMA_LINES)
    caches = cache_sizes(alloc)
    assert caches == [(24 * 2**20, 8192), (15 * 2**20, 1024)]
    per_global, per_swa = 24 * 2**20 // 8192, 15 * 2**20 // 1024
    assert used_bytes(caches, 100) == 100 * (per_global + per_swa)
    assert used_bytes(caches, 5000) == 5000 * per_global + 1024 * per_swa


def test_store_sizes_cover_the_db_and_snapshot_trees(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampler_mod, "STORE_TTL", 0.0)
    sampler = GaugeSampler(FakeEngine())
    (paths.db_dir() / "recall.sqlite").write_bytes(b"x" * 4096)
    nested = paths.snapshots_dir() / "session-a"
    nested.mkdir()
    (nested / "kv.bin").write_bytes(b"y" * 1000)
    assert sampler.sample().store_bytes == {"db": 4096, "snapshots": 1000, "total": 5096}


def test_store_sizes_are_cached_between_scans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampler_mod, "STORE_TTL", 3600.0)
    sampler = GaugeSampler(FakeEngine())
    first = sampler.sample().store_bytes
    (paths.db_dir() / "new.sqlite").write_bytes(b"z" * 10)
    assert sampler.sample().store_bytes == first


def test_sampling_from_another_thread_while_generating_is_safe() -> None:
    engine = FakeEngine(token_delay=0.0005)
    sampler = GaugeSampler(engine)
    engine.decode(list(b"prompt "))
    engine.enqueue("x" * 400)
    readings: list[GaugeReading] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def ui_timer() -> None:
        try:
            while not done.is_set():
                readings.append(sampler.sample())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=ui_timer)
    thread.start()
    list(engine.generate(Sampling(max_tokens=400)))
    done.set()
    thread.join()
    assert not errors and len(readings) > 1
    cells = [r.kv.cells_used for r in readings]
    assert cells == sorted(cells) and cells[-1] <= 407
    assert sampler.sample().kv.cells_used == 407


# ------------------------------------------------------------------ real model
# One decode thread: on a 2-core machine shared with other work, llama.cpp's second thread
# spin-waits at every barrier and a 16-token run can take 10x longer.
@pytest.fixture
def smollm1(smollm_path: Path) -> Any:
    with load_engine(EngineSettings(smollm_path, n_ctx=2048, n_threads=1)) as engine:
        yield engine


@pytest.mark.real
def test_readings_during_a_real_generation(smollm1: Any) -> None:
    smollm = smollm1
    sampler = GaugeSampler(smollm)
    assert sampler.sample().kv.cells_used == 0
    text = (DATA / "devils-dictionary-excerpt.txt").read_text()[:3000]
    smollm.decode(smollm.tokenize(text, add_special=True)[:64])
    readings: list[GaugeReading] = []
    for event in smollm.generate(Sampling(max_tokens=16, repeat_penalty=1.0)):
        if event.index % 4 == 0:
            readings.append(sampler.sample())
    final = sampler.sample()
    cells = [r.kv.cells_used for r in readings] + [final.kv.cells_used]
    assert cells == sorted(cells) and cells[-1] > cells[0] >= 64
    assert final.kv.cells_used == smollm.cells_used
    assert final.prefill_tps > 0 and final.decode_tps > 0 and final.decode_tokens > 0
    assert final.kv.total_bytes == smollm.kv_allocation().total_bytes == 2048 * 23040
    assert final.kv.used_bytes == final.kv.cells_used * 23040
    assert final.backend == "cpu" and final.layers_total == 31 and final.layers_offloaded == 0
    assert final.vram is None
    assert final.rss_bytes > smollm.kv_allocation().total_bytes


@pytest.mark.real
def test_sampling_never_calls_into_llama_cpp(smollm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every llama_cpp attribute raises after construction: a sample must still succeed."""
    sampler = GaugeSampler(smollm)
    smollm.decode(smollm.tokenize("The gauge reads Python state only.", add_special=True))

    class NoNativeCalls:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the gauge called llama_cpp.{name}")

    with monkeypatch.context() as patch:  # undone before the fixture frees the engine
        patch.setattr("localctx.engine.llama.llama_cpp", NoNativeCalls())
        reading = sampler.sample()
    assert reading.kv.cells_used == smollm.cells_used > 0


@pytest.mark.real
def test_evictions_are_counted_with_the_sink_window(smollm_path: Path) -> None:
    policy_mod = pytest.importorskip("localctx.kv.policy")
    text = (DATA / "devils-dictionary-excerpt.txt").read_text()[:3000]
    with load_engine(EngineSettings(smollm_path, n_ctx=256, n_threads=1)) as engine:
        window = policy_mod.SinkWindow(engine, window=128, n_sink=4)
        sampler = GaugeSampler(engine, window)
        tokens = engine.tokenize(text, add_special=True)[:320]
        window.decode(tokens)
        r = sampler.sample()
    assert r.kv.evictions > 0 and r.kv.evicted_tokens > 0
    assert r.kv.tokens_seen == 320 and r.kv.cells_used <= 128 and r.kv.window == 128
    assert r.kv.regions["sink"] == 4
    assert sum(v for k, v in r.kv.regions.items() if k != "free") == r.kv.cells_used
    assert r.kv.regions["free"] == 128 - r.kv.cells_used


@pytest.mark.real
def test_the_overhead_benchmark_runs_and_reports_its_fields(smollm_path: Path) -> None:
    from localctx.bench.gauge import gauge_overhead

    result = gauge_overhead(smollm_path, rounds=1, tokens=4, prompt_tokens=16, hz=50.0, threads=1)
    assert result["rounds"] == 1 and len(result["runs_tps_with"]) == 1
    assert result["decode_tps_without"] > 0 and result["decode_tps_with"] > 0
    assert {"sample_cost_pct", "cpu_overhead_pct", "throughput_overhead_pct"} <= set(result)
