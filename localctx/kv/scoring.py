"""Scores for the scored eviction policies: which cached cells the model still needs.

A scorer gives one number per cached position (higher: keep); SinkWindow hands the scores to
`planner.plan_scored`, which evicts the lowest-scoring cells of the evictable region. The
default policy, `window`, has no scorer: it evicts the oldest block (StreamingLLM).

- `keynorm` (Devoto et al., arXiv 2406.11430): keys with a small L2 norm draw the most
  attention, so the cells with the largest key norms go first. No attention weights are
  needed: the keys are read from llama.cpp's own cache state (engine/kvstate.py), after RoPE,
  whose rotation leaves a key's norm unchanged (a shifted cell keeps its score). The first
  two layers are skipped (the paper finds the norm/attention link weak there); each layer's
  norms are divided by that layer's mean, so no layer dominates the vote.
- `snapkv`: SnapKV's observation window (Li et al., arXiv 2404.14469) with its queries: the
  most recent queries vote, per head, for the cells they attend to; see kv/attention.py.
- `h2o`: H2O's heavy hitters (Zhang et al., arXiv 2306.14048): the attention a cell has
  received, accumulated over its life in the cache. H2O sums every query's attention; here
  the sum is over the queries SnapKV's vote sees at each eviction (a sample of 32 every
  window/4 tokens), so it costs what `snapkv` costs; see kv/attention.py.

Scores are computed once per eviction, not per token: one state read (~0.02-0.04 s for a few
thousand cells on 2 CPU cores) every window/4 tokens. Must not: change the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from localctx.engine.base import Engine
from localctx.errors import BadInput

POLICIES = ("window", "keynorm", "snapkv", "h2o")
QUERY_POLICIES = frozenset({"snapkv", "h2o"})  # need EngineSettings.capture_queries


def default_recent(window: int) -> int:
    """Newest tokens a scored policy never evicts unless told: the newer half of the window.

    The older half is where it chooses. Measured with `bench ppl` (SmolLM2-135M, window 512,
    two texts): protecting 256 tokens beat 64 and 128 for every scored policy; prose leans
    on its nearest few hundred tokens, which no score should take away."""
    return window // 2


class Scorer(Protocol):
    name: str

    def scores(
        self, engine: Engine, n_past: int, cells: Sequence[int] | None = None
    ) -> np.ndarray | None:
        """One score per position [0, n_past): higher is kept; None: none this time.
        `cells`, when given, names each position's cell for good (its stream index), so a
        scorer may carry what it learned about a cell across evictions and shifts."""
        ...


def needs_queries(evict: str) -> bool:
    """Whether `--evict NAME` needs the engine to capture queries (a callback per graph node,
    so the engine is made with it only then)."""
    return evict in QUERY_POLICIES


class KeyNormScorer:
    """Keep the cells whose keys have the smallest L2 norm (averaged over layers)."""

    name = "keynorm"

    def __init__(self, skip_layers: int = 2) -> None:
        self.skip_layers = skip_layers

    def scores(
        self, engine: Engine, n_past: int, cells: Sequence[int] | None = None
    ) -> np.ndarray | None:
        cached = engine.kv_keys()
        layers = cached.in_position_order(n_past)
        used = layers[self.skip_layers :] or layers  # a model with few layers: use them all
        total = np.zeros(n_past, dtype=np.float64)
        for keys in used:
            norms = np.linalg.norm(keys.astype(np.float32, copy=False), axis=1)
            mean = float(norms.mean()) if len(norms) else 1.0
            total += norms / (mean or 1.0)
        return -total / len(used)


def make_scorer(evict: str, engine: Engine, window: int | None = None) -> Scorer | None:
    """The scorer behind `--evict NAME` for a window of `window` cells; None for the window
    policy (no scores)."""
    if evict == "window":
        return None
    if evict == "keynorm":
        return KeyNormScorer()
    if evict == "snapkv":
        from localctx.kv.attention import SnapKvScorer

        return SnapKvScorer(engine, window=window)
    if evict == "h2o":
        from localctx.kv.attention import HeavyHitterScorer

        return HeavyHitterScorer(engine, window=window)
    raise BadInput(f"unknown eviction policy {evict!r}: choose one of {', '.join(POLICIES)}")
