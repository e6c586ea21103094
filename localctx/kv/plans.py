"""The sink-window eviction planner: positions in, KV operations out. Pure: no engine, no I/O.

The cache holds positions [0, n_past) contiguously (every eviction shifts the rest down):

    [ sinks | pinned | rolling part (messages, recalled snippets) ......... | free ]
    0       n_sink   protected_end                                 n_past    window

When the next `n_incoming` tokens would not fit in `window`, one contiguous block right after
the protected region (sinks + pinned) is evicted. Evicting in blocks (a quarter of the window by
default) keeps evictions rare: one seq_rm + seq_add costs ~45 ms at f16 on 2 cores, so evicting
token by token would cost more than decoding. The block's end snaps to a message boundary when
one lies near, so a turn is not cut mid-sentence, and it stops before the message being decoded
whenever the room needed can be found before it.

`kv_ops` turns an EvictionSpan into what the engine must do: remove + shift when the model's
cache can shift, else clear + re-prefill of what survives (the fallback; ~100x dearer).

`plan_scored` is the scored policies' planner (kv/scoring.py gives the scores): the same room,
taken from the lowest-scoring cells of the evictable region instead of its oldest block. Never
a sink, never the pinned region, never the newest `recent` tokens (unless the room cannot be
found elsewhere); the result is a set of disjoint runs, removed newest first so that every
gap closes and positions stay contiguous (`run_ops`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from localctx.errors import BadInput


@dataclass(frozen=True)
class CacheLayout:
    """What the planner needs to know about the cache right now (all positions)."""

    n_past: int  # cells used; positions [0, n_past) are all occupied
    protected_end: int  # positions below it (sinks + pinned) are never evicted
    boundaries: tuple[int, ...] = ()  # positions where a message starts
    current_start: int | None = None  # where the message being decoded began (None: none)


@dataclass(frozen=True)
class EvictionSpan:
    """Remove positions [p0, p1); positions [p1, n_past) then move down by p1 - p0."""

    p0: int
    p1: int
    n_past: int

    @property
    def n_tokens(self) -> int:
        return self.p1 - self.p0


@dataclass(frozen=True)
class RunEviction:
    """Remove the disjoint position runs [p0, p1) (sorted); every later position then moves
    down by the cells removed before it."""

    runs: tuple[tuple[int, int], ...]
    n_past: int

    @property
    def n_tokens(self) -> int:
        return sum(b - a for a, b in self.runs)


OpKind = Literal["remove", "shift", "clear", "prefill"]


@dataclass(frozen=True)
class KvOp:
    """One operation on sequence 0. `prefill` re-decodes the tokens the cache held at old
    positions [p0, p1), appended at the next free position (after a `clear`)."""

    kind: OpKind
    p0: int = 0
    p1: int = -1
    delta: int = 0


def default_block(window: int, *, can_shift: bool = True) -> int:
    """Tokens to evict at once: a quarter of the window when shifting (an eviction every
    window/4 tokens), half when every eviction re-prefills what survives (half as many
    re-prefills of the same size)."""
    return max(1, window // 4 if can_shift else window // 2)


def plan_eviction(
    layout: CacheLayout, n_incoming: int, *, window: int, block: int
) -> EvictionSpan | None:
    """The block to evict so that n_incoming more tokens fit in window cells, or None.

    Raises BadInput when n_incoming cannot fit even with everything evictable gone.
    """
    p0 = layout.protected_end
    n_past = layout.n_past
    need = _cells_needed(layout, n_incoming, window)
    if need <= 0:
        return None
    # Cells that may go: everything after the protected region; keep the message being
    # decoded whole when the room needed can be found before it.
    limit = n_past
    cur = layout.current_start
    if cur is not None and p0 + need <= cur < n_past:
        limit = cur
    target = min(max(need, block), limit - p0)
    goal = p0 + target
    # Snap to the nearest message boundary within half a block of the goal (ties: the larger
    # eviction, so the next one comes later).
    slack = max(target // 2, 1)
    near = [b for b in layout.boundaries if p0 + need <= b <= limit and abs(b - goal) <= slack]
    p1 = min(near, key=lambda b: (abs(b - goal), -b)) if near else goal
    return EvictionSpan(p0=p0, p1=p1, n_past=n_past)


def plan_scored(
    layout: CacheLayout,
    n_incoming: int,
    scores: np.ndarray,
    *,
    window: int,
    block: int,
    recent: int,
) -> RunEviction | None:
    """The lowest-scoring cells to evict so that n_incoming more tokens fit, or None.

    `scores` has one entry per position [0, n_past) (higher: keep; only the evictable ones
    are read). Evicts max(need, block) cells, as the window would, from [protected_end,
    n_past - recent); reaches into the recent tokens only when the room is not there.
    Ties go to the older cell. Raises BadInput like `plan_eviction`.
    """
    p0 = layout.protected_end
    n_past = layout.n_past
    need = _cells_needed(layout, n_incoming, window)
    if need <= 0:
        return None
    if len(scores) < n_past:
        raise BadInput(f"{len(scores)} scores for {n_past} cached positions")
    end = min(n_past, max(p0 + need, n_past - max(0, recent)))
    target = min(max(need, block), end - p0)
    part = np.asarray(scores[p0:end], dtype=np.float64)
    order = np.lexsort((np.arange(end - p0), part))  # by score, then oldest first
    chosen = np.sort(order[:target]) + p0
    return RunEviction(runs=_runs(chosen), n_past=n_past)


def _cells_needed(layout: CacheLayout, n_incoming: int, window: int) -> int:
    """Cells to free so that n_incoming more tokens fit (0 or less: none); BadInput when they
    cannot fit even with everything evictable gone."""
    p0 = layout.protected_end
    need = layout.n_past + n_incoming - window
    if need > 0 and (n_incoming > window - p0 or p0 > layout.n_past):
        raise BadInput(
            f"{n_incoming} tokens cannot fit in a window of {window} cells with "
            f"{p0} protected (sinks + pinned): use a larger window or smaller batches"
        )
    return need


def _runs(positions: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Sorted positions as maximal [start, end) runs."""
    if len(positions) == 0:
        return ()
    breaks = np.nonzero(np.diff(positions) != 1)[0]
    starts = np.concatenate(([positions[0]], positions[breaks + 1]))
    ends = np.concatenate((positions[breaks] + 1, [positions[-1] + 1]))
    return tuple((int(a), int(b)) for a, b in zip(starts, ends, strict=True))


def run_ops(eviction: RunEviction, *, can_shift: bool) -> tuple[KvOp, ...]:
    """The engine operations that carry out a RunEviction: per run, newest first, remove it
    and shift what follows down over the gap; or clear + re-prefill of every kept span."""
    e = eviction
    if can_shift:
        ops: list[KvOp] = []
        end = e.n_past
        for a, b in reversed(e.runs):
            ops.append(KvOp("remove", a, b))
            if b < end:
                ops.append(KvOp("shift", b, end, -(b - a)))
            end -= b - a
        return tuple(ops)
    ops = [KvOp("clear")]
    lo = 0
    for a, b in (*e.runs, (e.n_past, e.n_past)):
        if a > lo:
            ops.append(KvOp("prefill", lo, a))
        lo = b
    return tuple(ops)


def kv_ops(eviction: EvictionSpan, *, can_shift: bool) -> tuple[KvOp, ...]:
    """The engine operations that carry out an eviction."""
    e = eviction
    if can_shift:
        ops = [KvOp("remove", e.p0, e.p1)]
        if e.p1 < e.n_past:
            ops.append(KvOp("shift", e.p1, e.n_past, -e.n_tokens))
        return tuple(ops)
    ops = [KvOp("clear")]
    for lo, hi in ((0, e.p0), (e.p1, e.n_past)):
        if hi > lo:
            ops.append(KvOp("prefill", lo, hi))
    return tuple(ops)


def apply_ops(cells: Sequence[int], ops: Sequence[KvOp]) -> list[int]:
    """What the cache holds after `ops`, given what it held (one entry per position).

    The reference semantics of the ops: tests check the policy against it, and it documents
    that both the shift path and the fallback leave the same tokens at the same positions.
    """
    out: list[int | None] = list(cells)
    kept: list[int | None] = out
    for op in ops:
        if op.kind == "remove":
            for p in range(op.p0, min(op.p1, len(out))):
                out[p] = None
        elif op.kind == "shift":
            moved = [(p + op.delta, out[p]) for p in range(op.p0, min(op.p1, len(out)))]
            for p in range(op.p0, min(op.p1, len(out))):
                out[p] = None
            for p, tok in moved:
                if tok is not None:
                    out[p] = tok
        elif op.kind == "clear":
            kept = out
            out = []
        elif op.kind == "prefill":
            out.extend(kept[op.p0 : op.p1])
    while out and out[-1] is None:
        out.pop()
    if any(t is None for t in out):
        raise ValueError("ops left a hole in the cache")
    return [t for t in out if t is not None]
