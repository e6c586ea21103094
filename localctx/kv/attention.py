"""SnapKvScorer: the newest queries vote for the cells they attend to (SnapKV, arXiv 2404.14469).

SnapKV keeps, per head, the prefix positions that the last ~32 queries (its "observation
window") attend to most, pooled over neighbouring positions so that a fact is kept with its
context. Here the queries are the newest ones llama.cpp computed (engine/queries.py; captured
since the last eviction, so their positions agree with the keys'), the keys come from the
cache itself (engine/kvstate.py, quantized caches included), and the attention is recomputed
with numpy at eviction time: softmax(q.k / sqrt(d)) with the causal mask, summed over the
queries, averaged over the KV heads (a cell is shared by every head: llama.cpp cannot evict
per head) and over the layers, then max-pooled over `pool` neighbours.

Cost: one state read plus n_layer matrix products of (n_head x 32) by (n_cells x head_dim) per
eviction; with flash attention or a quantized cache this is the only way to see attention,
since llama.cpp never forms the weights then. Must not: change the cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from localctx.engine.base import Engine
from localctx.engine.queries import DEFAULT_KEEP
from localctx.errors import BadInput

DEFAULT_POOL = 7  # SnapKV's pooling kernel


class SnapKvScorer:
    name = "snapkv"

    def __init__(self, engine: Engine, pool: int = DEFAULT_POOL, window: int | None = None) -> None:
        if not engine.settings.capture_queries:
            raise BadInput(
                f"--evict {self.name} needs the engine to capture queries (EngineSettings."
                "capture_queries); the command-line front ends set it for you"
            )
        self.pool = pool
        if window is not None:  # only the queries just before an eviction vote
            engine.watch_queries_from(window - 2 * DEFAULT_KEEP)

    def scores(
        self, engine: Engine, n_past: int, cells: Sequence[int] | None = None
    ) -> np.ndarray | None:
        """Attention the newest queries pay each position [0, n_past); None when no query
        was captured since the last eviction (then the window evicts, this once)."""
        votes = self.votes(engine, n_past)
        return None if votes is None else max_pool(votes, self.pool)

    def votes(self, engine: Engine, n_past: int) -> np.ndarray | None:
        """The unpooled vote: per position, the newest queries' attention (mean over KV heads
        and layers)."""
        recent = engine.recent_queries()
        if recent is None or not recent.layers:
            return None
        keys = engine.kv_keys().in_position_order(n_past)
        total = np.zeros(n_past, dtype=np.float64)
        used = 0
        for layer, queries in recent.layers.items():
            if layer >= len(keys):
                continue
            got = attention_received(queries, recent.positions, keys[layer])
            if got is not None:
                total += got
                used += 1
        if not used:
            return None
        return total / used


class HeavyHitterScorer(SnapKvScorer):
    """H2O's heavy hitters: each cell's attention summed over every vote it has been in.

    A cell is known by its stream index (`cells`), so its sum survives the evictions and
    shifts that move its position; a cell seen for the first time starts at zero. Older
    cells have been in more votes, so they gather more (H2O's bias, which the recent tokens'
    protection balances). Without `cells` it is one vote, as `snapkv`. The sums are pooled as
    SnapKV pools (H2O does not): measured with `bench ppl` at window 512, pool 7 and pool 1
    are within 2.1% of each other in PPL either way, and pool 7 leaves ~5x fewer gaps."""

    name = "h2o"

    def __init__(self, engine: Engine, pool: int = DEFAULT_POOL, window: int | None = None) -> None:
        super().__init__(engine, pool=pool, window=window)
        self._sums: dict[int, float] = {}

    def scores(
        self, engine: Engine, n_past: int, cells: Sequence[int] | None = None
    ) -> np.ndarray | None:
        votes = self.votes(engine, n_past)
        if cells is None or len(cells) < n_past:
            return None if votes is None else max_pool(votes, self.pool)
        ids = list(cells[:n_past])
        total = np.fromiter((self._sums.get(c, 0.0) for c in ids), np.float64, n_past)
        if votes is not None:
            total += votes
        self._sums = dict(zip(ids, total.tolist(), strict=True))  # gone cells are forgotten
        if votes is None and not total.any():
            return None
        return max_pool(total, self.pool)


def attention_received(
    queries: np.ndarray, q_positions: np.ndarray, keys: np.ndarray
) -> np.ndarray | None:
    """Per key position, the softmax attention summed over queries, mean over KV heads.

    queries: (n_q, n_head, d) after RoPE; keys: (n_keys, n_kv_head * d) after RoPE, row p at
    position p. None when the shapes do not divide (another attention layout)."""
    n_q, n_head, d = queries.shape
    n_keys = keys.shape[0]
    if d == 0 or keys.shape[1] % d or n_head % max(1, keys.shape[1] // d):
        return None
    n_kv = keys.shape[1] // d
    group = n_head // n_kv
    k = keys.reshape(n_keys, n_kv, d).transpose(1, 0, 2)  # (n_kv, n_keys, d)
    q = queries.transpose(1, 0, 2).reshape(n_kv, group * n_q, d)  # heads of a group together
    logits = (q @ k.transpose(0, 2, 1)) / np.sqrt(d)  # (n_kv, group * n_q, n_keys)
    qpos = np.tile(q_positions, group)  # the query position of each row
    future = np.arange(n_keys)[None, :] > qpos[:, None]
    logits = np.where(future[None, :, :], -np.inf, logits)
    logits -= logits.max(axis=2, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=2, keepdims=True)
    received: np.ndarray = weights.sum(axis=1).mean(axis=0).astype(np.float64)
    return received


def max_pool(x: np.ndarray, kernel: int) -> np.ndarray:
    """Each entry becomes the max of its `kernel` neighbours (centred): keeps a cell's
    neighbours with it, so a kept fact keeps the words around it."""
    if kernel <= 1 or len(x) == 0:
        return x
    half = kernel // 2
    padded = np.pad(x, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel)
    pooled: np.ndarray = windows.max(axis=1)[: len(x)]
    return pooled
