"""What the live gauge costs: decode throughput with and without a 2 Hz sampler thread.

Two figures, because on a shared 2-core machine an A/B of throughput moves by a few percent
between identical runs:
- the direct cost: the sampler's own time per sample x rate, as a share of one core — the
  CPU time the gauge takes from decoding, whatever the noise;
- the A/B: decode tok/s alone and with the sampler thread, interleaved round by round so
  drift in the machine's load hits both sides alike; medians are compared.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

from localctx.engine import EngineSettings, Sampling, load_engine
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
    settings = EngineSettings(model_path=model_path, n_ctx=n_ctx, n_threads=threads)
    with load_engine(settings) as engine:
        prompt = engine.tokenize(text, add_special=True)[:prompt_tokens]
        sampler = GaugeSampler(engine)
        sampling = Sampling(max_tokens=tokens, temperature=0.0, repeat_penalty=1.0)
        off: list[float] = []
        on: list[float] = []
        sample_seconds: list[float] = []

        def run(with_gauge: bool) -> float:
            engine.kv_clear()
            engine.decode(prompt)
            stop = threading.Event()
            thread = threading.Thread(
                target=_sample_loop, args=(sampler, hz, stop, sample_seconds), daemon=True
            )
            if with_gauge:
                thread.start()
            for _ in engine.generate(sampling):
                pass
            stop.set()
            if with_gauge:
                thread.join()
            return engine.stats.decode_tps

        run(False)  # warm-up: first decode pays page faults and thread start-up
        for _ in range(rounds):
            off.append(run(False))
            on.append(run(True))
    tps_off, tps_on = statistics.median(off), statistics.median(on)
    mean_sample = statistics.fmean(sample_seconds) if sample_seconds else 0.0
    return {
        "model": Path(model_path).name,
        "hz": hz,
        "tokens": tokens,
        "rounds": rounds,
        "decode_tps_without": round(tps_off, 2),
        "decode_tps_with": round(tps_on, 2),
        "throughput_overhead_pct": round((tps_off - tps_on) / tps_off * 100, 2) if tps_off else 0,
        "samples": len(sample_seconds),
        "sample_ms_mean": round(mean_sample * 1000, 3),
        "sample_ms_max": round(max(sample_seconds, default=0.0) * 1000, 3),
        "sample_cost_pct": round(mean_sample * hz * 100, 4),
        "runs_without": [round(x, 2) for x in off],
        "runs_with": [round(x, 2) for x in on],
    }


_FILLER = " ".join(
    f"Line {i}: the gauge samples memory while the model decodes." for i in range(200)
)


def _sample_loop(
    sampler: GaugeSampler, hz: float, stop: threading.Event, seconds: list[float]
) -> None:
    period = 1.0 / hz
    while not stop.is_set():
        start = time.perf_counter()
        sampler.sample()
        seconds.append(time.perf_counter() - start)
        stop.wait(period)
