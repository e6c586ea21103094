"""SinkWindow: the StreamingLLM sink window, applied to a live engine. Bounded KV memory.

Owns the bookkeeping of what every cache position holds (stream index, message, kind) and
applies the planner's decisions (kv/plans.py) through the Engine protocol: seq_rm + seq_add
when llama.cpp can shift the cache, else clear + re-prefill (the fallback). Every evicted token
leaves as part of exactly one EvictedSegment in `queue`. Must not touch SQLite or the UI.

Peak cells never exceed `window`: room is made before each decode, for the tokens about to
come. Callers decode through `make_room` (engine.decode/generate call it) or `decode()` here,
which also splits a long prompt into batches that fit.

Measured on 2 CPU cores, SmolLM2-135M, first 3,000 tokens of The Devil's Dictionary, window
512 (bench ppl): full cache PPL 35.76, 4 sinks 37.55 (+5.0%), 0 sinks 65.54 (+83%). Evicting
1,000 tokens with seq_rm + seq_add costs a few ms plus one decode; re-prefilling what survives
costs seconds (bench kv), so the fallback evicts half the window at a time instead of a quarter.

SWA models (Gemma-3-270M: sliding window 512 on 15 of 18 layers), measured with llama.cpp in
llama-cpp-python 0.3.36, swa_full off (the default here):
- The SWA layers get their own cache of min(n_ctx, n_swa + n_ubatch) cells (1,024 at n_batch
  512). llama.cpp allows a K-shift only when both caches have the same size
  (llama_kv_cache_iswa::get_can_shift) and aborts the process on a shift otherwise. So the
  policy: n_ctx <= 1,024 -> can_shift is true and the window shifts as on any model, at the
  same memory as swa_full on; larger n_ctx -> can_shift is false and SinkWindow re-prefills
  (correct, slower). A sink window never needs more cells than `window`: size n_ctx to it.
- seq_rm and seq_add act on both caches. Checked against the same history with the same block
  removed and not shifted: KL <= 0.045 per step (SmolLM2: 0.013), i.e. the shift only re-ropes.
  Perplexity over 3,000 tokens, window 1,024, 4 sinks: 31.28 shifting, 31.69 re-prefilling.
  Cells older than the sliding window are dropped from the SWA cache, which attention masks
  anyway; so with windows <= 512 the SWA layers stop seeing the sinks (the 3 global layers
  keep them).
- State save/load (file or bytes) restores both caches exactly (0.0 logit difference at
  n_ctx 2,048, where the SWA cache has 1,024 cells); the state is ~10 MB for 800 tokens.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from localctx.engine.allocation import bytes_per_token
from localctx.engine.base import Engine
from localctx.engine.positions import kept_indices
from localctx.errors import BadInput, EngineFailed
from localctx.kv.plans import (
    CacheLayout,
    EvictionSpan,
    RunEviction,
    default_block,
    kv_ops,
    plan_eviction,
    plan_scored,
    run_ops,
)
from localctx.kv.scoring import Scorer, default_recent
from localctx.kv.segment import RUN_GAP, EvictedSegment, EvictionQueue, SegmentRun

log = logging.getLogger("localctx.kv")

# The smallest batch a window must leave room for beyond sinks + pinned: a short user line
# or a few generated tokens. Below it the "window" would evict on nearly every token.
MIN_BATCH = 16
NO_MESSAGE = -1  # message id of tokens decoded before any begin_message


@dataclass(frozen=True)
class WindowStats:
    """What the gauge shows about the window (cells are KV cache cells, one per token)."""

    cells_used: int
    window: int
    n_sink: int  # sink cells present
    pinned: int  # pinned cells present, sinks excluded
    recalled: int  # cells holding recalled snippets
    window_cells: int  # the rolling part: messages
    free: int
    evictions: int
    tokens_seen: int  # tokens in the stream so far (evicted + present)
    evicted_tokens: int
    bytes_per_token: float  # llama.cpp's KV allocation divided by its cells
    fallback_used: bool
    fallback_reason: str  # why evictions re-prefill; "" when they shift
    peak_cells: int = 0
    mode: str = "shift"  # "shift" (seq_rm + seq_add) or "reprefill" (the fallback)
    policy: str = "window"  # the eviction policy: window, keynorm, snapkv, h2o
    gaps: int = 0  # places where cached cells are not stream neighbours (scattered eviction)
    score_seconds: float = 0.0  # time spent scoring cells for eviction, all evictions

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WindowCheckpoint:
    """SinkWindow bookkeeping at one moment (`SinkWindow.checkpoint`)."""

    state: dict[str, Any]
    queued: int  # segments in the queue then

    @property
    def evictions(self) -> int:
        return int(self.state["_evictions"])


_SHARED = frozenset({"engine", "queue", "_lock"})  # not the window's own: never copied
_IMMUTABLE = (int, float, str, bool, tuple, frozenset, type(None))


def _copied(value: Any) -> Any:
    """A copy deep enough to be independent: lists of plain values are copied flat (one per
    cache cell: a deepcopy of a 32K-cell window took tens of ms), anything else deeply."""
    if isinstance(value, list) and all(isinstance(x, _IMMUTABLE) for x in value):
        return list(value)
    return copy.deepcopy(value)


class SinkWindow:
    """n_sink sinks + a pinned region + a rolling window, all within `window` cells."""

    def __init__(
        self,
        engine: Engine,
        *,
        window: int,
        n_sink: int = 4,
        block: int | None = None,
        queue: EvictionQueue | None = None,
        force_fallback: bool = False,
        batch: int = MIN_BATCH,
        scorer: Scorer | None = None,
        recent: int | None = None,
    ) -> None:
        if n_sink < 0:
            raise BadInput(f"sinks must be 0 or more, got {n_sink}")
        if batch < 1:
            raise BadInput(f"batch must be at least 1, got {batch}")
        if window < n_sink + batch:
            raise BadInput(
                f"window {window} is smaller than {n_sink} sinks + one batch of {batch} tokens"
            )
        if window > engine.n_ctx:
            raise BadInput(f"window {window} is larger than the context ({engine.n_ctx} cells)")
        if block is not None and block < 1:
            raise BadInput(f"eviction block must be at least 1 token, got {block}")
        if recent is None:
            recent = default_recent(window)
        if recent < 0:
            raise BadInput(f"recent tokens kept must be 0 or more, got {recent}")
        self.engine = engine
        self.scorer = scorer
        self.recent = recent
        self.policy_name = scorer.name if scorer is not None else "window"
        self.window = window
        self.n_sink = n_sink
        self.batch = batch
        self.queue = queue if queue is not None else EvictionQueue()
        self._can_shift = engine.can_shift and not force_fallback
        self.block = block or default_block(window, can_shift=self._can_shift)
        self.fallback_reason = "" if self._can_shift else _fallback_reason(engine, force_fallback)
        self._fallback_logged = False
        self._fallback_used = False
        self._lock = threading.RLock()
        self._pinned_end = 0
        # One entry per cache position [0, n_past): what the engine's mirror cannot tell.
        self._stream: list[int] = []
        self._msg: list[int] = []
        self._kind: list[str] = []
        self._current = (NO_MESSAGE, "message")
        self._current_start: int | None = None
        # [start, end) position runs of recalled cells, kept in step with _kind, so the gauge
        # reads the recalled region without scanning the window (O(runs), a few per turn).
        self._recalled: list[list[int]] = []
        self._last_stats: WindowStats | None = None
        self._last_regions: dict[str, tuple[int, int]] = {}
        self._tokens_seen = 0
        self._stream_floor = 0  # no segment index below it may be handed out again
        self._evictions = 0
        self._evicted_tokens = 0
        self._peak = 0
        self._seq = 0
        self._gaps = 0
        self._score_seconds = 0.0
        self._scorer_failed = ""
        self._bytes_per_token = bytes_per_token(engine.kv_allocation())
        self._sync()
        # Prime the readings a busy window hands to readers (see `stats`).
        self.stats()
        self._last_regions = self.regions

    # ------------------------------------------------------------------ caller API
    def make_room(self, n: int) -> None:
        """Evict so that n more tokens fit; pass to engine.decode/generate(make_room=...).

        O(1) unless an eviction is due: the message boundaries (a scan of every position)
        are only looked at then, once per evicted block, so per generated token the cost
        does not grow with the window (measured ~10 ms per token at 131,072 cells before).
        """
        with self._lock:
            self._sync()
            if len(self._stream) + n <= self.window:
                self._peak = max(self._peak, len(self._stream) + n)
                return
            layout = CacheLayout(
                n_past=len(self._stream),
                protected_end=self.protected_end,
                boundaries=self._boundaries(),
                current_start=self._current_start,
            )
            scores = self._scores() if self.scorer is not None else None
            if scores is not None:
                runs = plan_scored(
                    layout, n, scores, window=self.window, block=self.block, recent=self.recent
                )
                if runs is not None:
                    self._evict_runs(runs)
            else:
                eviction = plan_eviction(layout, n, window=self.window, block=self.block)
                if eviction is not None:
                    self._evict(eviction)
            self._peak = max(self._peak, len(self._stream) + n)

    def decode(self, tokens: Sequence[int]) -> None:
        """Decode tokens through the window, in batches that fit beside sinks + pinned."""
        step = max(1, min(self.engine.settings.n_batch, self.window - self.protected_end))
        if self.scorer is not None:  # a batch as large as the window leaves nothing to choose
            step = max(1, min(step, self.block))
        for i in range(0, len(tokens), step):
            self.engine.decode(tokens[i : i + step], make_room=self.make_room)
        self._sync()

    def set_pinned_end(self, pos: int) -> None:
        """Positions < pos (sinks included) are never evicted."""
        with self._lock:
            self._sync()
            if pos < 0:
                raise BadInput(f"pinned end must be 0 or more, got {pos}")
            if self.window < max(pos, self.n_sink) + self.batch:
                raise BadInput(
                    f"a pinned region up to position {pos} leaves less than one batch "
                    f"({self.batch} tokens) in a window of {self.window}"
                )
            self._pinned_end = pos

    def begin_message(self, message_id: int, kind: str = "message") -> None:
        """Tokens decoded from now on belong to this message ("message" or "recalled")."""
        if kind not in ("message", "recalled"):
            raise BadInput(f"message kind must be 'message' or 'recalled', got {kind!r}")
        with self._lock:
            self._sync()
            self._current = (message_id, kind)
            self._current_start = len(self._stream)

    def checkpoint(self) -> WindowCheckpoint:
        """The window's bookkeeping now, to `restore` when the message being decoded is taken
        back (a cancelled prefill); the caller restores the cache itself. Every attribute is
        kept (bar the engine, the queue and the lock), so bookkeeping added later is too."""
        with self._lock:
            self._sync()
            state = {k: _copied(v) for k, v in vars(self).items() if k not in _SHARED}
            return WindowCheckpoint(state, len(self.queue))

    def restore(self, mark: WindowCheckpoint) -> None:
        """Back to `checkpoint()`: segments evicted since are dropped from the queue (the
        caller put the cache back, so they are in it again)."""
        with self._lock:
            pending = self.queue.drain()
            for segment in pending[: mark.queued]:
                self.queue.put(segment)
            for name, value in mark.state.items():
                setattr(self, name, _copied(value))
            if self.engine.n_past != len(self._stream):
                raise EngineFailed(
                    f"the cache holds {self.engine.n_past} positions after a restore, "
                    f"the window expected {len(self._stream)}"
                )

    @property
    def protected_end(self) -> int:
        return max(self.n_sink, self._pinned_end)

    @property
    def regions(self) -> dict[str, tuple[int, int]]:
        """Position spans: sink, pinned, recalled (may lie inside window), window (rolling).

        A reader never waits out an eviction (a re-prefill takes seconds): while the decode
        thread holds the window, it gets the last regions read.
        """
        if not self._lock.acquire(blocking=False):
            return dict(self._last_regions)
        try:
            self._sync()
            n = len(self._stream)
            sink_end = min(self.n_sink, n)
            pinned_end = max(sink_end, min(self._pinned_end, n))
            runs = self._recalled_runs(pinned_end)
            span = (runs[0][0], runs[-1][1]) if runs else (pinned_end, pinned_end)
            self._last_regions = {
                "sink": (0, sink_end),
                "pinned": (sink_end, pinned_end),
                "recalled": span,
                "window": (pinned_end, n),
            }
            return dict(self._last_regions)
        finally:
            self._lock.release()

    def stats(self) -> WindowStats:
        """The window's figures; like `regions`, never waits out an eviction."""
        if not self._lock.acquire(blocking=False):
            if self._last_stats is not None:
                return self._last_stats
            self._lock.acquire()
        try:
            self._sync()
            n = len(self._stream)
            sinks = min(self.n_sink, n)
            pinned_end = max(sinks, min(self._pinned_end, n))
            recalled = sum(b - a for a, b in self._recalled_runs(pinned_end))
            self._last_stats = WindowStats(
                cells_used=n,
                window=self.window,
                n_sink=sinks,
                pinned=pinned_end - sinks,
                recalled=recalled,
                window_cells=n - pinned_end - recalled,
                free=self.window - n,
                evictions=self._evictions,
                tokens_seen=self._tokens_seen,
                evicted_tokens=self._evicted_tokens,
                bytes_per_token=self._bytes_per_token,
                fallback_used=self._fallback_used,
                fallback_reason=self.fallback_reason,
                peak_cells=self._peak,
                mode="shift" if self._can_shift else "reprefill",
                policy=self.policy_name + (" (fell back to window)" if self._scorer_failed else ""),
                gaps=self._gaps,
                score_seconds=round(self._score_seconds, 4),
            )
            return self._last_stats
        finally:
            self._lock.release()

    # ------------------------------------------------------------------ internals
    def _sync(self) -> None:
        """Catch up with what the engine decoded (or a tail the caller removed) since last time."""
        n = self.engine.n_past
        if self.engine.cells_used != n:
            # A reader on another thread (the gauge) can land between the decode thread's
            # append and our two reads; a second read sees the settled cache.
            n = self.engine.n_past
        if self.engine.cells_used != n:
            raise EngineFailed(
                f"the sink window needs a contiguous cache: {self.engine.cells_used} cells "
                f"used but positions reach {n}"
            )
        have = len(self._stream)
        if n > have:
            msg, kind = self._current
            self._stream.extend(range(self._tokens_seen, self._tokens_seen + n - have))
            self._msg.extend([msg] * (n - have))
            self._kind.extend([kind] * (n - have))
            self._append_kind(kind, have, n - have)
            self._tokens_seen += n - have
        elif n < have:
            # The caller rewound the tail (prefix reuse): those tokens never reached the stream.
            del self._stream[n:], self._msg[n:], self._kind[n:]
            self._cut_runs(n, have)
            last = self._stream[-1] + 1 if self._stream else 0
            self._tokens_seen = max(last, self._stream_floor)
            if self._current_start is not None and self._current_start > n:
                self._current_start = n
            if self._gaps:
                self._gaps = self._count_gaps()
        self._peak = max(self._peak, n)

    def _recalled_runs(self, start: int) -> list[tuple[int, int]]:
        """The recalled runs at or after position `start`, clipped to it."""
        return [(max(a, start), b) for a, b in self._recalled if b > start]

    def _append_kind(self, kind: str, start: int, count: int) -> None:
        if kind != "recalled" or count <= 0:
            return
        if self._recalled and self._recalled[-1][1] == start:
            self._recalled[-1][1] += count
        else:
            self._recalled.append([start, start + count])

    def _cut_runs(self, p0: int, p1: int) -> None:
        """Positions [p0, p1) left the stream; later ones moved down by p1 - p0."""
        width = p1 - p0
        runs = []
        for a, b in self._recalled:
            if b <= p0:
                runs.append([a, b])
            elif a >= p1:
                runs.append([a - width, b - width])
            else:  # overlaps the cut: keep what lies outside it
                keep = (min(a, p0), p0) if a < p0 else None
                tail = (p1, b) if b > p1 else None
                left = (keep[1] - keep[0]) if keep else 0
                right = (tail[1] - tail[0]) if tail else 0
                if left + right:
                    start = keep[0] if keep else p0
                    runs.append([start, start + left + right])
        self._recalled = runs

    def _boundaries(self) -> tuple[int, ...]:
        msg = self._msg
        starts = [p for p in range(self.protected_end + 1, len(msg)) if msg[p] != msg[p - 1]]
        if self._current_start is not None:
            starts.append(self._current_start)
        return tuple(starts)

    def _evict(self, ev: EvictionSpan) -> None:
        cached = self.engine.tokens
        removed = cached[ev.p0 : ev.p1]
        segment = EvictedSegment(
            seq=self._seq,
            stream_start=self._stream[ev.p0],
            stream_end=self._stream[ev.p1 - 1] + 1,
            positions=(ev.p0, ev.p1),
            tokens=tuple(removed),
            text=self.engine.detokenize(removed),
            message_ids=tuple(dict.fromkeys(self._msg[ev.p0 : ev.p1])),
        )
        ops = kv_ops(ev, can_shift=self._can_shift)
        if self._can_shift:
            for op in ops:
                if op.kind == "remove":
                    if not self.engine.kv_remove(op.p0, op.p1):
                        raise EngineFailed(f"llama.cpp refused to remove positions {op.p0}..")
                elif op.kind == "shift":
                    self.engine.kv_shift(op.p0, op.p1, op.delta)
        else:
            self._reprefill(
                [t for op in ops if op.kind == "prefill" for t in cached[op.p0 : op.p1]]
            )
        del self._stream[ev.p0 : ev.p1], self._msg[ev.p0 : ev.p1], self._kind[ev.p0 : ev.p1]
        self._cut_runs(ev.p0, ev.p1)
        if self._current_start is not None and self._current_start > ev.p0:
            self._current_start = max(ev.p0, self._current_start - ev.n_tokens)
        self._done(segment, ev.n_tokens, "tokens")

    def _scores(self) -> Any:
        """The scorer's scores for every cached position; None (evict the oldest block, as
        the window does) when it cannot score this cache, said once in the log and `stats`."""
        assert self.scorer is not None
        if self._scorer_failed:
            return None
        started = time.perf_counter()
        try:  # None: nothing to score with this time (the window evicts, this once)
            scores = self.scorer.scores(self.engine, len(self._stream), self._stream)
        except (EngineFailed, BadInput) as exc:
            self._scorer_failed = str(exc)
            log.warning("%s eviction fell back to the window: %s", self.policy_name, exc)
            return None
        finally:
            self._score_seconds += time.perf_counter() - started
        return scores

    def _evict_runs(self, ev: RunEviction) -> None:
        """Evict scattered cells: one segment whose runs are the stream-contiguous pieces."""
        cached = self.engine.tokens
        pieces: list[SegmentRun] = []
        for a, b in ev.runs:
            start = a
            for p in range(a + 1, b + 1):  # split where the stream skips (an older gap)
                if p == b or self._stream[p] != self._stream[p - 1] + 1:
                    toks = tuple(cached[start:p])
                    pieces.append(
                        SegmentRun(
                            stream_start=self._stream[start],
                            stream_end=self._stream[p - 1] + 1,
                            positions=(start, p),
                            tokens=toks,
                            text=self.engine.detokenize(list(toks)),
                            message_ids=tuple(dict.fromkeys(self._msg[start:p])),
                        )
                    )
                    start = p
        segment = EvictedSegment(
            seq=self._seq,
            stream_start=pieces[0].stream_start,
            stream_end=max(r.stream_end for r in pieces),
            positions=(ev.runs[0][0], ev.runs[-1][1]),
            tokens=tuple(t for r in pieces for t in r.tokens),
            text=RUN_GAP.join(r.text for r in pieces),
            message_ids=tuple(dict.fromkeys(m for r in pieces for m in r.message_ids)),
            runs=tuple(pieces),
        )
        if self._can_shift:
            self.engine.kv_remove_runs(ev.runs)
        else:
            self._reprefill(
                [
                    t
                    for op in run_ops(ev, can_shift=False)
                    if op.kind == "prefill"
                    for t in cached[op.p0 : op.p1]
                ]
            )
        keep = kept_indices(len(self._stream), ev.runs)
        if self._current_start is not None:
            self._current_start = bisect_left(keep, self._current_start)
        self._stream = [self._stream[i] for i in keep]
        self._msg = [self._msg[i] for i in keep]
        self._kind = [self._kind[i] for i in keep]
        self._recalled = []
        for p, kind in enumerate(self._kind):
            self._append_kind(kind, p, 1)
        self._gaps = self._count_gaps()
        self._done(segment, ev.n_tokens, "scattered tokens")

    def _done(self, segment: EvictedSegment, n_tokens: int, what: str) -> None:
        """Count an eviction, check the cache agrees with the record, hand the segment on."""
        self._stream_floor = max(self._stream_floor, segment.stream_end)
        self._seq += 1
        self._evictions += 1
        self._evicted_tokens += n_tokens
        if self.engine.n_past != len(self._stream):
            raise EngineFailed(
                f"after evicting {n_tokens} {what} the cache holds {self.engine.n_past} "
                f"positions, expected {len(self._stream)}"
            )
        self.queue.put(segment)

    def _count_gaps(self) -> int:
        s = self._stream
        start = min(self.protected_end, len(s))
        return sum(1 for p in range(start + 1, len(s)) if s[p] != s[p - 1] + 1)

    def _reprefill(self, kept: list[int]) -> None:
        if not self._fallback_logged:
            free = self.engine.model_facts.rebuild_is_free  # a remote engine's mirror
            level = logging.DEBUG if free else logging.WARNING
            log.log(level, "sink window re-prefills on eviction: %s", self.fallback_reason)
            self._fallback_logged = True
        stats = self.engine.stats
        saved = (stats.prefill_tokens, stats.prefill_seconds)  # keep the caller's prefill figure
        # Never stopped half-way: a cancel would leave the cache without what it must keep.
        with self.engine.cancellable(None):
            self.engine.kv_clear()
            self.engine.decode(kept)
        stats.prefill_tokens, stats.prefill_seconds = saved
        self._fallback_used = True


def _fallback_reason(engine: Engine, forced: bool) -> str:
    if forced:
        return "forced (force_fallback=True)"
    facts = engine.model_facts
    if facts.rebuild_is_free:
        return "the remote server keeps its own KV cache; the window is rebuilt here as text"
    if facts.swa and not engine.settings.swa_full:
        return (
            "the sliding-window layers keep a smaller cache (swa_full off and the context "
            "above the sliding window + one batch), which llama.cpp cannot shift; "
            "use a context no larger than that, or swa_full"
        )
    return "llama.cpp cannot shift this model's cache (M-RoPE, recurrent or hybrid)"
