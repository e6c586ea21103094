"""Readings of RAM, VRAM, KV regions, throughput and store sizes. Never blocks the decode loop.

`GaugeSampler(engine, policy=None).sample()` returns a frozen `GaugeReading` (`to_json()`);
the TUI samples it from a timer thread, `ask --json` and `bench` report the final one.
"""

from localctx.gauge.reading import GaugeReading, KvReading, RamReading, UnifiedMemory
from localctx.gauge.sampler import GaugeSampler

__all__ = ["GaugeReading", "GaugeSampler", "KvReading", "RamReading", "UnifiedMemory"]
