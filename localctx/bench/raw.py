"""localctx's engine against plain llama-cpp-python, side by side, in one process.

What it owns: the fair comparison. Both runners load the same model with the same numbers
(n_ctx, n_batch = n_ubatch, K/V types, threads, flash attention, swa_full) and are interleaved
at the finest grain their APIs allow, so a noisy shared machine slows both alike:
- prefill: the prompt goes in n_batch chunks, one runner's chunk then the other's, the order
  flipping each pair; each pair is at the same cache depth, and the figure is the median of
  the per-pair time ratios (a burst of load on the machine spoils one pair, not the median);
- decode: both greedy generators are stepped one token at a time, alternately; one step is
  "decode the previous token + sample the next" on both sides, the figure is the ratio of the
  median step times.
Both sides are greedy over identical logits, so they must produce the same tokens; the result
says whether they did (a difference would mean the settings were not identical).

Also the warm-restore figures for the same prefix: a KV snapshot (state_get/state_set, and the
file form state_save/state_load) against the cold prefill just measured.

Must not: assert speeds (tests check shapes and bounds, never timings) or import llama_cpp
(the raw runner lives in localctx.engine.raw_baseline).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from localctx.engine import EngineSettings, Sampling, load_engine
from localctx.engine.base import Engine, TokenEvent

Progress = Callable[[str], None]
GREEDY = Sampling(temperature=0.0, repeat_penalty=1.0)  # no penalty: raw's greedy is bare too


@dataclass
class SpeedPoint:
    """One model at one context size: both runners' figures and their ratios."""

    model: str
    n_ctx: int
    type_k: str
    prompt_tokens: int
    decode_tokens: int
    localctx_prefill_tps: float
    raw_prefill_tps: float
    localctx_decode_tps: float
    raw_decode_tps: float
    prefill_ratio: float  # localctx / raw; 1.0 = as fast, above 1 = faster
    decode_ratio: float
    prefill_pairs: int
    outputs_match: bool
    cold_prefill_seconds: float  # localctx, whole prompt (the cold side of the warm figure)
    first_sample_seconds: float
    warm: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def pair_order(index: int) -> tuple[str, str]:
    """Who goes first in pair `index`: alternate, so neither side always runs warm or cold."""
    return ("localctx", "raw") if index % 2 == 0 else ("raw", "localctx")


def prompt_from_text(tokens: Sequence[int], n: int, offset: int = 0) -> list[int]:
    """n prose tokens from `offset`, wrapping around (the sources hold ~95K tokens)."""
    if not tokens:
        raise ValueError("no tokens to build a prompt from")
    out: list[int] = []
    i = offset % len(tokens)
    while len(out) < n:
        take = tokens[i : i + n - len(out)]
        out.extend(take)
        i = 0
    return out


def compare(
    settings: EngineSettings,
    text: str,
    *,
    decode_tokens: int,
    prefill_reps: int = 1,
    warm_reps: int = 0,
    progress: Progress | None = None,
) -> SpeedPoint:
    """Prefill a prompt that fills n_ctx (less the decode budget), then decode, both runners.

    Both first decode a few tokens unmeasured (the first llama_decode allocates the compute
    graph and starts the thread pool). A prompt of one chunk gives one pair per rep, so short
    contexts take prefill_reps > 1; the order keeps alternating across reps.
    """
    from localctx.engine.raw_baseline import RawLlama

    say = progress or (lambda _msg: None)
    label = settings.model_path.stem
    with load_engine(settings) as engine:  # flash attention as the product sets it (auto)
        flash = bool(engine.backend_info()["flash_attn"])
        with RawLlama(settings, flash_attn=flash) as raw:
            source = engine.tokenize(text[: settings.n_ctx * 8])
            prompt = prompt_from_text(source, settings.n_ctx - decode_tokens - 1, offset=997)
            say(f"{label} @ {settings.n_ctx}: prefill {len(prompt)} tokens, both runners")
            engine.decode(prompt[:16])
            raw.reset()
            raw.append(prompt[:16])
            cold: list[float] = []
            raw_total: list[float] = []
            pair_ratios: list[float] = []
            for _rep in range(prefill_reps):
                local_s, raw_s, ratios = _interleaved_prefill(
                    engine, raw, prompt, settings.n_batch, first_pair=len(pair_ratios)
                )
                cold.append(sum(local_s))
                raw_total.append(sum(raw_s))
                pair_ratios += ratios
            say(f"{label} @ {settings.n_ctx}: decode {decode_tokens} tokens, both runners")
            steps = _interleaved_decode(engine, raw, prompt, decode_tokens)
            cold_s = _median(cold)
            warm = measure_warm(engine, prompt, cold_s, warm_reps) if warm_reps else {}
    local_steps, raw_steps = steps["localctx"][1:], steps["raw"][1:]
    return SpeedPoint(
        model=engine.model_name,
        n_ctx=settings.n_ctx,
        type_k=settings.type_k,
        prompt_tokens=len(prompt),
        decode_tokens=len(local_steps),
        localctx_prefill_tps=ratio(len(prompt), cold_s),
        raw_prefill_tps=ratio(len(prompt), _median(raw_total)),
        localctx_decode_tps=ratio(1.0, _median(local_steps)),
        raw_decode_tps=ratio(1.0, _median(raw_steps)),
        prefill_ratio=_median(pair_ratios),
        decode_ratio=ratio(_median(raw_steps), _median(local_steps)),
        prefill_pairs=len(pair_ratios),
        outputs_match=steps["match"],
        cold_prefill_seconds=cold_s,
        first_sample_seconds=steps["localctx"][0] if steps["localctx"] else 0.0,
        warm=warm,
    )


def _interleaved_prefill(
    engine: Engine, raw: Any, prompt: list[int], n_batch: int, *, first_pair: int = 0
) -> tuple[list[float], list[float], list[float]]:
    engine.kv_clear()
    raw.reset()
    local_s: list[float] = []
    raw_s: list[float] = []
    for index, i in enumerate(range(0, len(prompt), n_batch)):
        chunk = prompt[i : i + n_batch]
        for side in pair_order(first_pair + index):
            if side == "localctx":
                start = time.perf_counter()
                engine.decode(chunk)
                local_s.append(time.perf_counter() - start)
            else:
                raw_s.append(raw.append(chunk))
    return local_s, raw_s, [ratio(r, loc) for loc, r in zip(local_s, raw_s, strict=True)]


def _interleaved_decode(engine: Engine, raw: Any, prompt: list[int], n: int) -> dict[str, Any]:
    """Step both greedy generators alternately; n + 1 steps = n decodes and n + 1 samples."""
    gens: dict[str, Iterator[Any]] = {
        "localctx": iter(engine.generate(replace(GREEDY, max_tokens=n + 1))),
        "raw": raw.stream(prompt),
    }
    times: dict[str, list[float]] = {"localctx": [], "raw": []}
    tokens: dict[str, list[int]] = {"localctx": [], "raw": []}
    done = False
    for index in range(n + 1):
        for side in pair_order(index):
            start = time.perf_counter()
            item = next(gens[side], None)
            elapsed = time.perf_counter() - start
            if item is None:  # end of generation (EOG) on the localctx side
                done = True
                break
            times[side].append(elapsed)
            tokens[side].append(item.token if isinstance(item, TokenEvent) else int(item))
        if done:
            break
    for gen in gens.values():
        close = getattr(gen, "close", None)
        if close:
            close()
    k = min(len(times["localctx"]), len(times["raw"]))
    # Equal sequences over the whole budget: an early end on one side is a mismatch.
    full = len(tokens["localctx"]) == len(tokens["raw"]) == n + 1
    return {
        "localctx": times["localctx"][:k],
        "raw": times["raw"][:k],
        "match": full and tokens["localctx"] == tokens["raw"],
    }


def measure_warm(engine: Engine, prompt: list[int], cold_s: float, reps: int) -> dict[str, Any]:
    """Restore the prompt's KV from a snapshot, in memory and from a file, vs cold prefill.

    The engine holds prompt + generated tokens; dropping the generated tail leaves exactly the
    prompt's cells, so no second cold prefill is needed.
    """
    engine.kv_remove(len(prompt), -1)
    start = time.perf_counter()
    snapshot = engine.state_get()
    get_s = time.perf_counter() - start
    restore = [_timed(lambda: engine.state_set(snapshot, prompt)) for _ in range(reps)]
    with tempfile.TemporaryDirectory(prefix="localctx-bench-") as tmp:
        path = Path(tmp) / "prefix.kv"
        save_s = _timed(lambda: engine.state_save(path))
        file_bytes = path.stat().st_size
        load = [_timed(lambda: engine.state_load(path)) for _ in range(reps)]
    # TTFT from a snapshot of prompt[:-1]: restore, decode the last prompt token, sample.
    engine.kv_remove(len(prompt) - 1, -1)
    head = engine.state_get()
    ttft = []
    for _ in range(reps):
        start = time.perf_counter()
        engine.state_set(head, prompt[:-1])
        engine.decode(prompt[-1:])
        next(iter(engine.generate(replace(GREEDY, max_tokens=1))), None)
        ttft.append(time.perf_counter() - start)
    warm_s = _median(restore)
    return {
        "prefix_tokens": len(prompt),
        "snapshot_bytes": len(snapshot),
        "file_bytes": file_bytes,
        "state_get_seconds": get_s,
        "restore_seconds": warm_s,
        "save_file_seconds": save_s,
        "load_file_seconds": _median(load),
        "cold_prefill_seconds": cold_s,
        "warm_speedup": ratio(cold_s, warm_s),
        "warm_speedup_from_file": ratio(cold_s, _median(load)),
        "ttft_warm_seconds": _median(ttft),
        "reps": reps,
    }


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0
