"""What the live gauge costs: decode throughput with and without a 2 Hz sampler thread.

Three figures, because on a shared 2-core machine an A/B of throughput can move by far more
than the gauge costs (decode runs varied 2-107 tok/s within one run at load average 10):
- the direct cost: the sampler thread's own CPU time per sample x rate, as a share of one
  core — what the gauge takes from decoding, whatever else the machine does;
- process CPU per decoded token, with and without the sampler (less load-sensitive than
  wall time);
- decode tok/s alone and with the sampler thread, interleaved round by round so drift in
  the machine's load hits both sides alike; medians are compared.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localctx.bench.settings import bench_settings
from localctx.engine import Sampling, load_engine
from localctx.gauge import GaugeSampler


def gauge_overhead(
    model_path: Path,
    text_path: Path | None = None,
    *,
    quick: bool = False,
    threads: int | None = None,
    hz: float = 2.0,
    tokens: int = 64,
    rounds: int | None = None,
    prompt_tokens: int = 256,
    n_ctx: int = 2048,
) -> dict[str, Any]:
    """Decode `tokens` tokens per run, `rounds` runs each without and with a sampler at `hz`.

    The prompt only has to be tokens: any text works, the file is read when given.
    """
    rounds = rounds or (3 if quick else 6)
    text = text_path.read_text(encoding="utf-8")[:20000] if text_path else _FILLER
    settings = bench_settings(model_path=model_path, n_ctx=n_ctx, n_threads=threads)
    with load_engine(settings) as engine:
        prompt = engine.tokenize(text, add_special=True)[:prompt_tokens]
        sampler = GaugeSampler(engine)
        sampling = Sampling(max_tokens=tokens, temperature=0.0, repeat_penalty=1.0)
        off: list[Run] = []
        on: list[Run] = []
        samples: list[tuple[float, float]] = []  # (wall, CPU) seconds of each sample

        def run(with_gauge: bool) -> Run:
            engine.kv_clear()
            engine.decode(prompt)
            stop = threading.Event()
            thread = threading.Thread(
                target=_sample_loop, args=(sampler, hz, stop, samples), daemon=True
            )
            if with_gauge:
                thread.start()
            cpu = time.process_time()  # every thread of the process: decode + sampler
            for _ in engine.generate(sampling):
                pass
            cpu = time.process_time() - cpu
            stop.set()
            if with_gauge:
                thread.join()
            n = max(engine.stats.decode_tokens, 1)
            return Run(engine.stats.decode_tps, cpu / n)

        run(False)  # warm-up: first decode pays page faults and thread start-up
        for _ in range(rounds):
            off.append(run(False))
            on.append(run(True))
    tps_off = statistics.median(r.tps for r in off)
    tps_on = statistics.median(r.tps for r in on)
    cpu_off = statistics.median(r.cpu_per_token for r in off)
    cpu_on = statistics.median(r.cpu_per_token for r in on)
    wall = [w for w, _ in samples] or [0.0]
    cpu = [c for _, c in samples] or [0.0]
    return {
        "model": Path(model_path).name,
        "hz": hz,
        "tokens": tokens,
        "rounds": rounds,
        "threads": threads,
        "samples": len(samples),
        "sample_ms_mean": round(statistics.fmean(wall) * 1000, 3),
        "sample_ms_max": round(max(wall) * 1000, 3),
        "sample_cpu_ms_mean": round(statistics.fmean(cpu) * 1000, 3),
        # CPU the sampler takes per second at this rate, as a share of one core.
        "sample_cost_pct": round(statistics.fmean(cpu) * hz * 100, 4),
        "decode_tps_without": round(tps_off, 2),
        "decode_tps_with": round(tps_on, 2),
        "throughput_overhead_pct": _pct_drop(tps_off, tps_on),
        "cpu_ms_per_token_without": round(cpu_off * 1000, 2),
        "cpu_ms_per_token_with": round(cpu_on * 1000, 2),
        "cpu_overhead_pct": _pct_drop(cpu_on, cpu_off),
        "runs_tps_without": [round(r.tps, 2) for r in off],
        "runs_tps_with": [round(r.tps, 2) for r in on],
    }


@dataclass(frozen=True)
class Run:
    tps: float
    cpu_per_token: float  # process CPU seconds per decoded token


def _pct_drop(base: float, other: float) -> float:
    """How much lower `other` is than `base`, in percent (negative: higher)."""
    return round((base - other) / base * 100, 2) if base else 0.0


_FILLER = " ".join(
    f"Line {i}: the gauge samples memory while the model decodes." for i in range(200)
)


def _sample_loop(
    sampler: GaugeSampler, hz: float, stop: threading.Event, samples: list[tuple[float, float]]
) -> None:
    period = 1.0 / hz
    while not stop.is_set():
        wall, cpu = time.perf_counter(), time.thread_time()
        sampler.sample()
        samples.append((time.perf_counter() - wall, time.thread_time() - cpu))
        stop.wait(period)
