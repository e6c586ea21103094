"""Byte counts as users write them ("8GiB", "8000MB", "7.5 GB", "8589934592") and back.

Decimal units (KB, MB, GB, TB) are powers of 1000 and binary ones (KiB … TiB) of 1024, as the
IEC defines them; a bare K/M/G/T is read as binary, the way memory is usually sold and shown.
"""

from __future__ import annotations

import re

from localctx.errors import BadInput

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
}  # fmt: skip
_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """A positive byte count. Raises BadInput with an example of what parses."""
    m = _BYTES.match(text or "")
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise BadInput(
            f"cannot read the budget '{text}': give bytes or a number with a unit "
            "(8GiB, 8000MB, 8589934592)"
        )
    value = int(float(m.group(1)) * _UNITS[unit])
    if value <= 0:
        raise BadInput(f"the budget must be more than 0 bytes, got '{text}'")
    return value


def format_bytes(n: int) -> str:
    """Binary units with two significant decimals: 16.00 GiB, 180.00 MiB, 23 KiB."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"
