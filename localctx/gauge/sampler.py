"""GaugeSampler: readings of RAM, VRAM, KV regions, throughput and store sizes.

Called from a UI timer thread while another thread decodes, so it reads only Python-side
state: the engine's position mirror and stats, the KV policy's counters (under the policy's
own lock, held for microseconds), psutil and NVML. It never calls into llama.cpp after
construction — llama.cpp contexts are not thread-safe and a query mid-decode could race it.
Facts that cannot change while the engine lives (backend, n_ctx, KV allocation) are read once
in the constructor, which must therefore run before decoding starts.

Cost, measured on 2 shared CPU cores (localctx.bench.gauge, SmolLM2-135M): 0.38-0.46 ms of
CPU a sample, i.e. 0.08-0.09% of one core at 2 Hz; decode with a 2 Hz sampler ran at 24.94
tok/s against 25.44 without (medians of 8 interleaved runs that themselves spread 21.6-26.5).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import psutil

from localctx import paths
from localctx.engine.allocation import cache_sizes
from localctx.engine.base import Engine
from localctx.errors import EngineFailed
from localctx.gauge.reading import GaugeReading, KvReading, RamReading, UnifiedMemory
from localctx.planner.devices import NvidiaGpus

STORE_TTL = 2.0  # seconds a store-size scan stays fresh: files grow per turn, not per token


class WindowPolicy(Protocol):
    """What the gauge reads from a sink-window policy (localctx.kv.policy.SinkWindow)."""

    @property
    def regions(self) -> dict[str, tuple[int, int]]: ...
    def stats(self) -> Any: ...


class GaugeSampler:
    def __init__(
        self,
        engine: Engine,
        policy: WindowPolicy | None = None,
        *,
        store_dirs: Iterable[Path] | None = None,
    ) -> None:
        self.engine = engine
        self.policy = policy
        info = engine.backend_info()
        self.backend = str(info.get("backend", "cpu"))
        self.gpu_offload = bool(info.get("gpu_offload", False))
        self.layers_total = engine.model_facts.block_count + 1
        # llama.cpp's own count from its load log; engines without one (remote, fake) give
        # the request, bounded by the layers there are.
        if "layers_offloaded" in info:
            self.layers_offloaded = int(info["layers_offloaded"])
        else:
            requested = engine.settings.n_gpu_layers
            offloaded = self.layers_total if requested < 0 else min(requested, self.layers_total)
            self.layers_offloaded = offloaded if self.gpu_offload else 0
        self.n_ctx = engine.n_ctx
        self.allocation = engine.kv_allocation()
        self.caches = cache_sizes(self.allocation)
        self.store_dirs = tuple(store_dirs or (paths.db_dir(), paths.snapshots_dir()))
        self._process = psutil.Process(os.getpid())
        self._nvidia = NvidiaGpus.shared() if self.backend == "cuda" else None
        self._lock = threading.Lock()
        self._stores: dict[str, int] = {}
        self._stores_at = float("-inf")

    def sample(self) -> GaugeReading:
        vm = psutil.virtual_memory()
        stats = self.engine.stats
        unified = None
        if self.backend == "metal":
            unified = UnifiedMemory(vm.total - vm.available, vm.total)
        vram = tuple(self._nvidia.read()) if self._nvidia is not None else None
        return GaugeReading(
            taken_at=time.time(),
            rss_bytes=self._process.memory_info().rss,
            ram=RamReading(vm.total - vm.available, vm.available, vm.total),
            backend=self.backend,
            gpu_offload=self.gpu_offload,
            layers_offloaded=self.layers_offloaded,
            layers_total=self.layers_total,
            vram=vram,
            unified_memory=unified,
            kv=self._kv(),
            prefill_tps=round(stats.prefill_tps, 2),
            decode_tps=round(stats.decode_tps, 2),
            prefill_tokens=stats.prefill_tokens,
            decode_tokens=stats.decode_tokens,
            store_bytes=self._store_bytes(),
        )

    def _kv(self) -> KvReading:
        settings = self.engine.settings
        per_token = sum(b / c for b, c in self.caches if c)
        if self.policy is None:
            used = self.engine.cells_used
            regions = {"sink": 0, "pinned": 0, "recalled": 0, "window": used}
            spans = {"window": (0, self.engine.n_past)}
            window = None
            seen, evictions, evicted, fallback = self.engine.n_past, 0, 0, False
            policy, gaps = "none", 0
            free = max(self.n_ctx - used, 0)
        else:
            s = self._policy_stats()
            spans = dict(self.policy.regions)
            used, window = s.cells_used, s.window
            regions = {
                "sink": s.n_sink,
                "pinned": s.pinned,
                "recalled": s.recalled,
                "window": s.window_cells,
            }
            seen, evictions, evicted = s.tokens_seen, s.evictions, s.evicted_tokens
            fallback, free = bool(s.fallback_used), s.free
            policy, gaps = s.policy, s.gaps
            per_token = float(s.bytes_per_token) or per_token
        regions["free"] = free
        return KvReading(
            n_ctx=self.n_ctx,
            cells_used=used,
            regions=regions,
            spans=spans,
            total_bytes=self.allocation.total_bytes,
            used_bytes=used_bytes(self.caches, used),
            bytes_per_token=per_token,
            type_k=settings.type_k,
            type_v=settings.type_v,
            window=window,
            tokens_seen=seen,
            evictions=evictions,
            evicted_tokens=evicted,
            fallback_used=fallback,
            policy=policy,
            gaps=gaps,
        )

    def _policy_stats(self) -> Any:
        """The policy's counters. Its consistency check (cells held == positions) can trip for
        an instant when the decode thread appends a token between its two reads; a second
        read sees the settled state, and a real inconsistency still raises."""
        try:
            return self.policy.stats()  # type: ignore[union-attr]
        except EngineFailed:
            return self.policy.stats()  # type: ignore[union-attr]

    def _store_bytes(self) -> dict[str, int]:
        with self._lock:
            now = time.monotonic()
            if now - self._stores_at >= STORE_TTL:
                sizes = {d.name: _tree_bytes(d) for d in self.store_dirs}
                sizes["total"] = sum(sizes.values())
                self._stores, self._stores_at = sizes, now
            return dict(self._stores)


def used_bytes(caches: list[tuple[int, int]], cells_used: int) -> int:
    """Bytes the used cells occupy: a sliding-window cache never holds more than its cells."""
    return round(sum(b / c * min(cells_used, c) for b, c in caches if c))


def _tree_bytes(root: Path) -> int:
    total = 0
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
                elif entry.is_dir(follow_symlinks=False):
                    total += _tree_bytes(Path(entry.path))
    except OSError:  # removed or unreadable while scanning: count what was seen
        pass
    return total
