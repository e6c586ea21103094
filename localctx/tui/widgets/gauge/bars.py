"""Bar arithmetic for the gauge (pure): cells of a terminal bar per region, and byte labels.

A KV cache of 8,192 cells drawn in 30 terminal columns puts ~273 cells in each column, so the
4 sink cells would round to nothing; any non-empty region gets at least one column (taken
from the largest), because "are the sinks there" is exactly what the bar is for.
"""

from __future__ import annotations

from collections.abc import Sequence


def split_columns(values: Sequence[int], width: int) -> list[int]:
    """Columns for each value, summing to `width` (largest remainder, non-zero -> >= 1)."""
    total = sum(max(v, 0) for v in values)
    if width <= 0 or total <= 0:
        return [0] * len(values)
    exact = [max(v, 0) * width / total for v in values]
    cols = [int(x) for x in exact]
    by_remainder = sorted(range(len(values)), key=lambda i: exact[i] - cols[i], reverse=True)
    for i in by_remainder[: width - sum(cols)]:
        cols[i] += 1
    for i, v in enumerate(values):
        if v > 0 and cols[i] == 0:
            donor = max(range(len(cols)), key=lambda j: cols[j])
            if cols[donor] > 1:
                cols[donor] -= 1
                cols[i] = 1
    return cols


def human_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_count(n: float | None) -> str:
    """Token counts: 987, 12.4K, 1.2M."""
    if n is None:
        return "—"
    if n < 1000:
        return f"{n:.0f}"
    if n < 1_000_000:
        return f"{n / 1000:.1f}K"
    return f"{n / 1_000_000:.1f}M"
