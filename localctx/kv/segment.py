"""EvictedSegment: what the sink window removed from the KV cache, exactly.

The KV policy produces these; the memory tier consumes them (verbatim to the recall store,
then summarized). Nothing evicted may vanish silently: segments wait in an EvictionQueue
until a consumer takes them. A scored policy's segment is scattered: its `runs` say exactly
which stream indices it holds. A consumer that must store each one at once (a kill -9 during
a long prefill would otherwise lose every segment evicted so far) registers a listener,
called after every put; an error it raises stops the decode that evicted.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SegmentRun:
    """One stream-contiguous piece of a scattered eviction (a scored policy's segment)."""

    stream_start: int
    stream_end: int  # exclusive
    positions: tuple[int, int]  # KV positions [p0, p1) it held when evicted
    tokens: tuple[int, ...]
    text: str
    message_ids: tuple[int, ...]


RUN_GAP = " … "  # joins a scattered segment's run texts: the cells kept between them are gone


@dataclass(frozen=True)
class EvictedSegment:
    seq: int  # 0, 1, 2, … per policy: the order of evictions
    stream_start: int  # index of the first evicted token among all tokens ever decoded
    stream_end: int  # exclusive
    positions: tuple[int, int]  # KV positions [p0, p1) it held when evicted
    tokens: tuple[int, ...]
    text: str
    message_ids: tuple[int, ...]  # the messages these tokens came from (may be partial)
    # A scored policy evicts scattered cells: then `runs` holds each stream-contiguous piece
    # (tokens, text, stream indices, message ids); `tokens` is their concatenation, `text`
    # their texts joined by RUN_GAP, the stream and position spans enclose them all. The
    # window's segments are one contiguous run and leave `runs` empty.
    runs: tuple[SegmentRun, ...] = ()

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def scattered(self) -> bool:
        return len(self.runs) > 1

    def stream_runs(self) -> tuple[tuple[int, int], ...]:
        """The stream index spans [start, end) this segment holds, oldest first."""
        if self.runs:
            return tuple((r.stream_start, r.stream_end) for r in self.runs)
        return ((self.stream_start, self.stream_end),)


class EvictionQueue:
    """A thread-safe FIFO of segments; `drain()` hands all pending ones to the consumer."""

    def __init__(self) -> None:
        self._items: deque[EvictedSegment] = deque()
        self._lock = threading.Lock()
        self._listener: Callable[[], None] | None = None

    def listen(self, listener: Callable[[], None] | None) -> None:
        """Call `listener` (outside the queue's lock) after each put; None stops it."""
        self._listener = listener

    def put(self, segment: EvictedSegment) -> None:
        with self._lock:
            self._items.append(segment)
        if self._listener is not None:
            self._listener()

    def drain(self) -> list[EvictedSegment]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
