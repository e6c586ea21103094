"""The path users run, against plain llama-cpp-python: Session turns at 4K-128K cells.

`bench all`'s engine comparison measures LlamaEngine alone; a chat runs through Session
(recall, the template increment, the sink window's bookkeeping before every token) with the
gauge sampling from another thread. This measures that path at the sizes the product claims:
- history: messages fed through the session until the cache holds `n_ctx` less the answer
  budget; over the first INTERLEAVED_PREFILL cells each message is a pair (the session feeds
  it, then raw llama-cpp-python evaluates exactly the tokens the session decoded — raw must
  go second, it needs those tokens), the figure is the median of the per-pair ratios; past
  that only the session prefills, and the raw runner adopts the session's sequence state (so
  128K cells cost one prefill, not two);
- a question: the session recalls, appends the user message and generates; raw evaluates the
  same increment; then both greedy generators are stepped alternately, one token each, for
  2n tokens: the first n with the gauge sampler running at 2.5 Hz on a thread (as the chat
  app does), the next n without. Both must produce the same tokens for the whole budget (an
  early end on one side is a mismatch).
The gauge's own cost at that size is 1 - (decode ratio with the sampler / without it).

Must not: assert speeds, or import llama_cpp (the raw runner lives in engine.raw_baseline).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from localctx.bench.raw import GREEDY, pair_order, ratio
from localctx.engine import EngineSettings, load_engine
from localctx.engine.base import TokenEvent
from localctx.gauge import GaugeSampler
from localctx.memory.recall import RecallStore
from localctx.memory.snapshots import SnapshotStore
from localctx.session import Session

INTERLEAVED_PREFILL = 4096  # tokens prefilled in pairs; beyond, the raw side adopts the state
GAUGE_HZ = 2.5
MESSAGE_CHARS = 1600  # one history message: ~400 tokens of prose

Progress = Callable[[str], None]


@dataclass
class ProductPoint:
    model: str
    n_ctx: int
    cells: int  # cells in the cache when the question was asked
    prefill_pairs: int
    prefill_ratio: float  # session / raw over the interleaved part; 1.0 = as fast
    decode_tokens: int
    session_decode_tps: float
    raw_decode_tps: float
    decode_ratio: float  # with the gauge sampling at 2.5 Hz
    decode_ratio_no_gauge: float
    gauge_cost: float  # 1 - (rate with sampler / rate without), session side
    gauge_samples: int
    outputs_match: bool
    history_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


class _Sampler:
    """The gauge on a thread at GAUGE_HZ, as the chat app runs it."""

    def __init__(self, sampler: GaugeSampler) -> None:
        self._sampler = sampler
        self._stop = threading.Event()
        self.samples = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(1.0 / GAUGE_HZ):
            self._sampler.sample()
            self.samples += 1


def compare_product(
    settings: EngineSettings,
    text: str,
    *,
    decode_tokens: int = 64,
    progress: Progress | None = None,
) -> ProductPoint:
    """One size: `settings.n_ctx` cells, the whole context as the session's window."""
    from localctx.engine.raw_baseline import RawLlama

    say = progress or (lambda _msg: None)
    budget = 2 * decode_tokens + 96  # two answers (with and without the gauge) + the question
    target = settings.n_ctx - budget
    with (
        tempfile.TemporaryDirectory(prefix="localctx-product-") as tmp,
        load_engine(settings) as engine,
    ):
        flash = bool(engine.backend_info()["flash_attn"])  # what "auto" resolved to
        store = RecallStore(Path(tmp) / "recall.sqlite3")
        session = Session(
            engine,
            store=store,
            snapshots=SnapshotStore(Path(tmp) / "snaps"),
            name="product",
            window=settings.n_ctx,
            summarize_per_turn=0,
        )
        with RawLlama(settings, flash_attn=flash) as raw:
            session.prepare_turn(summarize=False)
            raw.reset()
            raw.append(engine.tokens)  # the pinned region, outside the measured pairs
            say(f"{settings.model_path.stem} @ {settings.n_ctx}: history to {target} cells")
            t0 = time.perf_counter()
            pairs: list[float] = []
            i = 0
            while engine.cells_used + 600 < target:
                start_at = (i * MESSAGE_CHARS) % max(1, len(text) - MESSAGE_CHARS)
                chunk = text[start_at : start_at + MESSAGE_CHARS]
                before = engine.n_past
                start = time.perf_counter()
                session.feed("user", chunk)
                local_s = time.perf_counter() - start
                if engine.cells_used <= INTERLEAVED_PREFILL:
                    # Raw goes second: it evaluates exactly the tokens the session decoded.
                    pairs.append(ratio(raw.append(engine.tokens[before:]), local_s))
                i += 1
            if engine.cells_used > INTERLEAVED_PREFILL:
                held = engine.tokens
                raw.adopt(engine.state_get(), held)
            history_s = time.perf_counter() - t0
            say(f"{settings.model_path.stem} @ {settings.n_ctx}: a turn, both runners")
            sampler = GaugeSampler(engine, session.policy)
            turn = _ask_both(session, raw, "What is this text about?", decode_tokens, sampler)
        store.close()
    with_gauge, without = turn["gauge"], turn["plain"]
    ratio_gauge = ratio(_median(with_gauge["raw"]), _median(with_gauge["local"]))
    ratio_plain = ratio(_median(without["raw"]), _median(without["local"]))
    local_rate = ratio(1.0, _median(with_gauge["local"]))
    return ProductPoint(
        model=settings.model_path.stem,
        n_ctx=settings.n_ctx,
        cells=turn["cells"],
        prefill_pairs=len(pairs),
        prefill_ratio=_median(pairs),
        decode_tokens=len(with_gauge["local"]),
        session_decode_tps=local_rate,
        raw_decode_tps=ratio(1.0, _median(with_gauge["raw"])),
        decode_ratio=ratio_gauge,
        decode_ratio_no_gauge=ratio_plain,
        gauge_cost=1.0 - ratio(ratio_gauge, ratio_plain) if ratio_plain else 0.0,
        gauge_samples=turn["samples"],
        outputs_match=turn["match"],
        history_seconds=history_s,
    )


def _ask_both(
    session: Session, raw: Any, question: str, n: int, sampler: GaugeSampler
) -> dict[str, Any]:
    """A session turn and raw llama-cpp-python on the same tokens, stepped alternately for
    2n tokens: the first n with the gauge sampling on a thread, the next n without."""
    engine = session.engine
    before = engine.n_past
    turn: Iterator[TokenEvent] = iter(
        session.stream(question, replace(GREEDY, max_tokens=2 * n + 1))
    )
    first = next(turn, None)  # recall + the user message's prefill + the first sample
    held = engine.tokens  # everything decoded: the sampled token is not, on either side
    raw.append(held[before:])
    gen = raw.stream(held)
    first_raw = next(gen, None)
    halves: list[dict[str, list[float]]] = [{"local": [], "raw": []}, {"local": [], "raw": []}]
    tokens: dict[str, list[int]] = {
        "local": [first.token] if first is not None else [],
        "raw": [int(first_raw)] if first_raw is not None else [],
    }
    cells = engine.cells_used
    runner = _Sampler(sampler)
    runner.__enter__()
    try:
        for index in range(2 * n):
            if index == n:
                runner.__exit__()
            half = halves[0 if index < n else 1]
            for side in pair_order(index):
                key = "local" if side == "localctx" else "raw"
                start = time.perf_counter()
                item = next(turn, None) if key == "local" else next(gen, None)
                elapsed = time.perf_counter() - start
                if item is None:
                    continue
                half[key].append(elapsed)
                tokens[key].append(item.token if isinstance(item, TokenEvent) else int(item))
    finally:
        if runner._thread.is_alive():
            runner.__exit__()
        for g in (turn, gen):
            close = getattr(g, "close", None)
            if close:
                close()
    full = 2 * n + 1
    match = len(tokens["local"]) == len(tokens["raw"]) == full and tokens["local"] == tokens["raw"]
    return {
        "gauge": halves[0],
        "plain": halves[1],
        "match": match,
        "cells": cells,
        "samples": runner.samples,
    }


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
