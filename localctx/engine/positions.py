"""PositionMirror: which token each position of sequence 0 holds, kept beside the KV cache.

llama.cpp does not tell which token a cell holds, and the KV policy needs the exact text it
evicts. Every engine applies the same remove/shift arithmetic to this mirror that llama.cpp
applies to its cells, so `tokens` and `n_past` always describe the cache.

`cells_used` is a running count, not a scan: the sink window asks for it before every
generated token, and a scan of 131,072 positions cost ~1 ms each time.
"""

from __future__ import annotations

from collections.abc import Iterable


class PositionMirror:
    def __init__(self) -> None:
        self._pos: list[int | None] = []
        self._used = 0

    @property
    def n_past(self) -> int:
        """The next free position (pos_max + 1)."""
        return len(self._pos)

    @property
    def tokens(self) -> list[int]:
        return [t for t in self._pos if t is not None]

    @property
    def cells_used(self) -> int:
        return self._used

    @property
    def last(self) -> int | None:
        return self._pos[-1] if self._pos else None

    def pos_range(self) -> tuple[int, int]:
        held = [p for p, t in enumerate(self._pos) if t is not None]
        return (held[0], held[-1]) if held else (-1, -1)

    def extend(self, tokens: Iterable[int]) -> None:
        before = len(self._pos)
        self._pos.extend(tokens)
        self._used += len(self._pos) - before

    def reset(self, tokens: Iterable[int] = ()) -> None:
        self._pos = list(tokens)
        self._used = len(self._pos)

    def remove(self, p0: int, p1: int) -> None:
        """Forget positions [p0, p1) (p1 < 0: to the end); later positions keep their numbers."""
        end = self._end(p1)
        for p in range(max(p0, 0), end):
            if self._pos[p] is not None:
                self._pos[p] = None
                self._used -= 1
        self._trim()

    def shift(self, p0: int, p1: int, delta: int) -> None:
        """Add delta to the positions in [p0, p1) (p1 < 0: to the end)."""
        start, end = max(p0, 0), self._end(p1)
        moved = {p + delta: self._pos[p] for p in range(start, end) if self._pos[p] is not None}
        for p in range(start, end):
            self._pos[p] = None
        for p, token in moved.items():
            if p < 0:
                continue
            if p >= len(self._pos):
                self._pos.extend([None] * (p + 1 - len(self._pos)))
            self._pos[p] = token
        self._used = sum(t is not None for t in self._pos)  # a shift is O(range) anyway
        self._trim()

    def compact(self, runs: Iterable[tuple[int, int]]) -> None:
        """Forget the positions in `runs` (disjoint [p0, p1) spans) and close the gaps, as
        remove + shift of everything after each run would: O(positions), once."""
        self._pos = [self._pos[i] for i in kept_indices(len(self._pos), runs)]
        self._used = sum(t is not None for t in self._pos)
        self._trim()

    def _end(self, p1: int) -> int:
        return len(self._pos) if p1 < 0 else min(p1, len(self._pos))

    def _trim(self) -> None:
        while self._pos and self._pos[-1] is None:
            self._pos.pop()


def kept_indices(n: int, spans: Iterable[tuple[int, int]]) -> list[int]:
    """The indices of range(n) outside the [start, end) spans (clipped to it), in order: what
    is left of a list once scattered runs leave it."""
    drop = bytearray(n)
    for a, b in spans:
        a, b = max(a, 0), min(b, n)
        if a < b:
            drop[a:b] = b"\x01" * (b - a)
    return [i for i, gone in enumerate(drop) if not gone]
