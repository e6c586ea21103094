"""GaugeReading: one frozen snapshot of where memory and time go. Plain data, JSON-ready.

Field names carry their unit (_bytes, _tps, _cells) so the TUI, `ask --json` and `bench` can
show them without a schema. Regions are KV cells (one per token): sink / pinned / recalled /
window / free, as the sink-window policy lays out the cache.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from localctx.planner.devices import GpuMemory


@dataclass(frozen=True)
class KvReading:
    n_ctx: int  # cells llama.cpp allocated for the sequence
    cells_used: int
    regions: dict[str, int]  # cells: sink, pinned, recalled, window, free
    spans: dict[str, tuple[int, int]]  # positions [start, end) of each region, when known
    total_bytes: int  # what llama.cpp reported allocating for K and V
    used_bytes: int  # bytes the used cells take (SWA layers bounded by their own cache)
    bytes_per_token: float
    type_k: str
    type_v: str
    window: int | None  # the sink window's size; None without a policy
    tokens_seen: int
    evictions: int
    evicted_tokens: int
    fallback_used: bool  # evictions re-prefilled because the cache cannot shift
    policy: str = "window"  # the eviction policy (window, keynorm, snapkv, h2o)
    gaps: int = 0  # places where a scored policy evicted between kept cells


@dataclass(frozen=True)
class RamReading:
    used_bytes: int
    available_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class UnifiedMemory:
    used_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class GaugeReading:
    taken_at: float  # time.time()
    rss_bytes: int  # this process's resident set
    ram: RamReading  # the whole system
    backend: str  # cpu | cuda | metal | vulkan (fake for the test engine)
    gpu_offload: bool  # the build can offload layers
    layers_offloaded: int
    layers_total: int  # repeating layers + the output head
    vram: tuple[GpuMemory, ...] | None  # per NVIDIA GPU; None when the backend is not CUDA
    unified_memory: UnifiedMemory | None  # Apple Metal; None elsewhere
    kv: KvReading
    prefill_tps: float  # of the last turn
    decode_tps: float
    prefill_tokens: int
    decode_tokens: int
    store_bytes: dict[str, int] = field(default_factory=dict)  # on disk: db, snapshots, total

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kv"]["spans"] = {k: list(v) for k, v in self.kv.spans.items()}
        if self.vram is not None:
            data["vram"] = [g.to_json() for g in self.vram]
        return data
