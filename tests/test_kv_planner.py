"""The eviction planner as a pure function: exhaustive over small windows."""

from __future__ import annotations

import itertools
import random

import pytest

from localctx.errors import BadInput
from localctx.kv.plans import (
    CacheLayout,
    EvictionSpan,
    KvOp,
    apply_ops,
    default_block,
    kv_ops,
    plan_eviction,
)


def _layouts(window: int, rng: random.Random):
    """Every (n_past, protected_end, n_incoming, current_start) for a window, with boundary
    sets: all subsets when few positions, else a seeded sample."""
    for protected in range(window):
        for n_past in range(protected, window + 1):
            positions = list(range(protected + 1, n_past + 1))
            if len(positions) <= 6:
                subsets = [
                    c
                    for r in range(len(positions) + 1)
                    for c in itertools.combinations(positions, r)
                ]
            else:
                subsets = [
                    tuple(sorted(rng.sample(positions, rng.randint(0, len(positions)))))
                    for _ in range(12)
                ]
            for bounds in subsets:
                for current in (None, *bounds):
                    for n in range(1, window + 2):
                        yield CacheLayout(n_past, protected, bounds, current), n


@pytest.mark.parametrize("window", [1, 2, 5, 8, 11])
@pytest.mark.parametrize("block_kind", ["one", "quarter", "huge"])
def test_plan_invariants_exhaustive(window: int, block_kind: str) -> None:
    rng = random.Random(window)
    block = {"one": 1, "quarter": default_block(window), "huge": 10 * window}[block_kind]
    checked = 0
    for layout, n in _layouts(window, rng):
        p0, n_past = layout.protected_end, layout.n_past
        need = n_past + n - window
        if need <= 0:
            assert plan_eviction(layout, n, window=window, block=block) is None
            continue
        if n > window - p0:
            with pytest.raises(BadInput, match="cannot fit"):
                plan_eviction(layout, n, window=window, block=block)
            continue
        ev = plan_eviction(layout, n, window=window, block=block)
        assert ev is not None
        checked += 1
        # Never touches the protected region; frees enough; never past the end.
        assert ev.p0 == p0
        assert p0 + need <= ev.p1 <= n_past
        assert n_past - ev.n_tokens + n <= window
        # The message being decoded stays whole when the room can be found before it.
        cur = layout.current_start
        if cur is not None and p0 + need <= cur < n_past:
            assert ev.p1 <= cur
            limit = cur
        else:
            limit = n_past
        # Evicts a block (not just what is needed) when there is enough to take.
        target = min(max(need, block), limit - p0)
        slack = max(target // 2, 1)
        assert abs(ev.p1 - (p0 + target)) <= slack
        # Snaps to a message boundary when one lies near, and to the nearest one.
        near = [b for b in layout.boundaries if p0 + need <= b <= limit]
        near = [b for b in near if abs(b - (p0 + target)) <= slack]
        if near:
            assert ev.p1 in layout.boundaries
            best = min(abs(b - (p0 + target)) for b in near)
            assert abs(ev.p1 - (p0 + target)) == best
        else:
            assert ev.p1 == p0 + target
    assert checked > 0


def test_block_is_a_quarter_of_the_window_and_half_when_reprefilling() -> None:
    assert default_block(512) == 128
    assert default_block(512, can_shift=False) == 256
    assert default_block(2) == 1


def test_boundary_alignment_prefers_the_message_start_near_the_block() -> None:
    # window 512, 4 sinks, pinned to 40; messages start at 100, 170, 300, 480 (current).
    layout = CacheLayout(512, 40, (100, 170, 300, 480), current_start=480)
    ev = plan_eviction(layout, 1, window=512, block=128)
    assert ev is not None
    assert (ev.p0, ev.p1) == (40, 170)  # goal 168, nearest boundary 170


def test_the_current_message_is_not_cut_when_avoidable() -> None:
    # A long current message from 60: the room is found before it, even if short of a block.
    layout = CacheLayout(500, 4, (60,), current_start=60)
    ev = plan_eviction(layout, 20, window=512, block=128)
    assert ev is not None and ev.p1 == 60
    # When the room cannot be found before it, the current message is cut.
    layout = CacheLayout(500, 4, (10,), current_start=10)
    ev = plan_eviction(layout, 20, window=512, block=128)
    assert ev is not None and ev.p1 > 10


def test_pinned_region_is_never_evicted_and_too_big_a_batch_is_refused() -> None:
    layout = CacheLayout(512, 300, ())
    ev = plan_eviction(layout, 64, window=512, block=128)
    assert ev is not None and ev.p0 == 300
    with pytest.raises(BadInput, match="cannot fit"):
        plan_eviction(layout, 213, window=512, block=128)


@pytest.mark.parametrize("can_shift", [True, False])
def test_ops_leave_sinks_pinned_and_survivors_in_order(can_shift: bool) -> None:
    for n_past, p0, p1 in itertools.product(range(1, 12), range(0, 11), range(1, 12)):
        if not p0 < p1 <= n_past:
            continue
        cells = list(range(100, 100 + n_past))
        ops = kv_ops(EvictionSpan(p0, p1, n_past), can_shift=can_shift)
        assert apply_ops(cells, ops) == cells[:p0] + cells[p1:]
        kinds = {op.kind for op in ops}
        assert kinds <= ({"remove", "shift"} if can_shift else {"clear", "prefill"})


def test_shift_ops_are_one_remove_and_one_shift() -> None:
    assert kv_ops(EvictionSpan(4, 132, 512), can_shift=True) == (
        KvOp("remove", 4, 132),
        KvOp("shift", 132, 512, -128),
    )
    assert kv_ops(EvictionSpan(4, 132, 512), can_shift=False) == (
        KvOp("clear"),
        KvOp("prefill", 0, 4),
        KvOp("prefill", 132, 512),
    )


@pytest.mark.parametrize("seed", range(6))
def test_a_stream_through_the_planner_loses_no_token(seed: int) -> None:
    """Messages stream through: every evicted token lands in exactly one block, in order,
    the pinned front never moves, and the cache never holds more than the window."""
    rng = random.Random(seed)
    window, pinned = rng.choice([(32, 4), (64, 0), (100, 12)])
    block = default_block(window)
    stream = list(range(pinned))  # sinks + pinned, decoded first
    cache = list(stream)
    boundaries: list[int] = []
    blocks: list[list[int]] = []
    peak = 0
    for _ in range(60):
        current = len(cache)
        boundaries.append(current)
        left = rng.randint(1, 30)
        while left:
            n = min(left, rng.randint(1, 8))
            layout = CacheLayout(len(cache), pinned, tuple(boundaries), current)
            ev = plan_eviction(layout, n, window=window, block=block)
            if ev is not None:
                blocks.append(cache[ev.p0 : ev.p1])
                cache = apply_ops(cache, kv_ops(ev, can_shift=seed % 2 == 0))
                shift = ev.n_tokens
                boundaries = [
                    b - shift if b >= ev.p1 else b for b in boundaries if not ev.p0 < b < ev.p1
                ]
                current = current - shift if current >= ev.p1 else min(current, ev.p0)
            new = list(range(len(stream), len(stream) + n))
            stream.extend(new)
            cache.extend(new)
            peak = max(peak, len(cache))
            left -= n
    assert peak <= window
    assert blocks, "the stream never filled the window"
    assert cache[:pinned] == stream[:pinned]
    evicted = [t for b in blocks for t in b]
    assert cache[:pinned] + evicted + cache[pinned:] == stream
