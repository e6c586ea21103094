"""What each eviction policy costs: prefill and decode throughput through the same sink window,
the policies interleaved round by round (so a noisy machine's drift hits them alike).

Prefill: `--prefill` tokens of the shipped prose in 64-token batches through the window.
Decode: `--decode` greedy tokens one at a time after a prompt that fills most of the window,
so the window evicts while generating (an eviction every window/4 tokens).
Usage: .venv/bin/python scripts/bench_evict_cost.py [--model M] [--window 512] [--rounds 3]
       [--prefill 3000] [--decode 512] [--python-capture]
Prints one JSON object: per policy, the median tok/s of each phase and its ratio to `window`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace

from localctx.bench.texts import default_prose
from localctx.engine import EngineSettings, Sampling, load_engine
from localctx.kv.policy import SinkWindow
from localctx.kv.scoring import POLICIES, make_scorer, needs_queries
from localctx.models.catalogue import resolve_model


def one(model: str, evict: str, window: int, prefill: int, decode: int, threads: int | None):
    settings = EngineSettings(
        model_path=resolve_model(model), n_ctx=window, n_threads=threads, seed=0
    )
    settings = replace(settings, capture_queries=needs_queries(evict))
    text = default_prose().read_text(encoding="utf-8")  # type: ignore[union-attr]
    with load_engine(settings) as engine:
        ids = engine.tokenize(text[: prefill * 8])[:prefill]
        policy = SinkWindow(
            engine, window=window, n_sink=4, batch=64, scorer=make_scorer(evict, engine, window)
        )
        start = time.perf_counter()
        for i in range(0, len(ids), 64):
            policy.decode(ids[i : i + 64])
        prefill_tps = len(ids) / (time.perf_counter() - start)
        engine.kv_clear()
        policy = SinkWindow(
            engine, window=window, n_sink=4, batch=64, scorer=make_scorer(evict, engine, window)
        )
        policy.decode(ids[: window - 64])
        sampling = Sampling(max_tokens=decode, temperature=0.0, repeat_penalty=1.0)
        start = time.perf_counter()
        n = sum(1 for _ in engine.generate(sampling, make_room=policy.make_room))
        decode_tps = n / (time.perf_counter() - start)
        stats = policy.stats()
    return prefill_tps, decode_tps, stats.evictions, stats.score_seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--prefill", type=int, default=3000)
    ap.add_argument("--decode", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--python-capture",
        action="store_true",
        help="also snapkv with the Python eval callback (LOCALCTX_QUERY_CAPTURE=python)",
    )
    a = ap.parse_args()
    runs_of = list(POLICIES) + (["snapkv:python"] if a.python_capture else [])
    got: dict[str, list[tuple[float, float, int, float]]] = {p: [] for p in runs_of}
    for _ in range(a.rounds):
        for name in runs_of:
            evict, _, capture = name.partition(":")
            if capture:
                os.environ["LOCALCTX_QUERY_CAPTURE"] = capture
            else:
                os.environ.pop("LOCALCTX_QUERY_CAPTURE", None)
            got[name].append(one(a.model, evict, a.window, a.prefill, a.decode, a.threads))
    med = {
        p: {
            "prefill_tps": round(statistics.median(r[0] for r in runs), 1),
            "decode_tps": round(statistics.median(r[1] for r in runs), 2),
            "decode_evictions": runs[-1][2],
            "score_seconds": round(runs[-1][3], 3),
        }
        for p, runs in got.items()
    }
    base = med["window"]
    for m in med.values():
        m["prefill_vs_window"] = round(m["prefill_tps"] / base["prefill_tps"], 3)
        m["decode_vs_window"] = round(m["decode_tps"] / base["decode_tps"], 3)
    report = {"model": a.model, "cells": a.window, "rounds": a.rounds, "policies": med}
    sys.stdout.write(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
