"""FairQueue: requests waiting for the one loaded model, FIFO per session, round-robin across.

One model, one KV cache: requests are served one at a time. A session's requests keep their
order (its second turn must see its first); across sessions the queue takes one request from
each waiting session in turn, so a client that queues ten turns cannot starve the others. A
stateless request is a session of its own. When `limit` requests wait, `put` refuses (the HTTP
layer answers 503 with Retry-After) instead of letting latency grow without bound.

Thread-safe: the HTTP event loop puts and discards, the model thread takes.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    def __init__(self, depth: int) -> None:
        super().__init__(f"{depth} requests are waiting")
        self.depth = depth


class QueueClosed(Exception):
    pass


class FairQueue(Generic[T]):
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"queue limit must be at least 1, got {limit}")
        self.limit = limit
        self._lanes: OrderedDict[Hashable, deque[T]] = OrderedDict()
        self._depth = 0
        self._closed = False
        self._cond = threading.Condition()

    @property
    def depth(self) -> int:
        """Requests waiting (the one being served is not counted)."""
        return self._depth

    def put(self, lane: Hashable, item: T) -> int:
        """Queue `item` behind `lane`'s earlier ones; returns the depth including it."""
        with self._cond:
            if self._closed:
                raise QueueClosed("the server is shutting down")
            if self._depth >= self.limit:
                raise QueueFull(self._depth)
            self._lanes.setdefault(lane, deque()).append(item)
            self._depth += 1
            self._cond.notify()
            return self._depth

    def take(self, timeout: float | None = None) -> T | None:
        """The next item: the head of the lane that has waited longest for a turn."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._depth:
                if self._closed:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            lane, items = next(iter(self._lanes.items()))
            item = items.popleft()
            del self._lanes[lane]
            if items:
                self._lanes[lane] = items  # back of the line for its next one
            self._depth -= 1
            return item

    def discard(self, lane: Hashable, item: T) -> bool:
        """Drop a waiting item (its client went away); False when it is no longer waiting."""
        with self._cond:
            items = self._lanes.get(lane)
            if items is None or item not in items:
                return False
            items.remove(item)
            if not items:
                del self._lanes[lane]
            self._depth -= 1
            return True

    def close(self) -> list[T]:
        """Refuse new items and hand back the waiting ones."""
        with self._cond:
            self._closed = True
            left = [item for items in self._lanes.values() for item in items]
            self._lanes.clear()
            self._depth = 0
            self._cond.notify_all()
            return left
