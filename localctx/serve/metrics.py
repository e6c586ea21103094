"""ServeMetrics: the server's counters, and their Prometheus text exposition (format 0.0.4).

Counters are bumped by the HTTP layer (requests by status) and the model thread (tokens,
evictions, rebuilds); KV figures come from the gauge reading the model thread takes after each
turn and every ~0.25 s while it generates — `/metrics` never calls into the engine or the
sink window, whose state belongs to the thread that decodes. Rendering is a pure function of a
snapshot, so the format is unit-tested without a server.

Written by hand rather than with prometheus_client: a dozen families, one scrape format, and
no process-global registry to keep out of the tests.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from localctx.gauge import GaugeReading

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = TTFT_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(TTFT_BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1


class ServeMetrics:
    """Thread-safe counters; `snapshot()` copies them for rendering."""

    def __init__(self, *, model: str, queue_limit: int) -> None:
        self.model = model
        self.queue_limit = queue_limit
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()  # (endpoint, status)
        self.tokens: Counter[str] = Counter()  # prompt_decoded, prompt_cached, completion, ...
        self.events: Counter[str] = Counter()  # evictions, rebuilds, rewinds, summaries, ...
        self.ttft = Histogram()
        self.queue_depth = 0
        self.in_progress = 0
        self.sessions_open = 0
        self.parked_bytes = 0
        self.last_prefill_tps = 0.0
        self.last_decode_tps = 0.0
        self.reading: GaugeReading | None = None

    def request(self, endpoint: str, status: int | str) -> None:
        with self._lock:
            self.requests[(endpoint, str(status))] += 1

    def add(self, **tokens: int) -> None:
        with self._lock:
            self.tokens.update(tokens)

    def count(self, event: str, n: int = 1) -> None:
        with self._lock:
            self.events[event] += n

    def first_token(self, seconds: float) -> None:
        with self._lock:
            self.ttft.observe(seconds)

    def set(self, **values: Any) -> None:
        with self._lock:
            for name, value in values.items():
                setattr(self, name, value)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "model": self.model,
                "queue_limit": self.queue_limit,
                "requests": dict(self.requests),
                "tokens": dict(self.tokens),
                "events": dict(self.events),
                "ttft": Histogram(
                    self.ttft.buckets, list(self.ttft.counts), self.ttft.total, self.ttft.n
                ),
                "queue_depth": self.queue_depth,
                "in_progress": self.in_progress,
                "sessions_open": self.sessions_open,
                "parked_bytes": self.parked_bytes,
                "prefill_tps": self.last_prefill_tps,
                "decode_tps": self.last_decode_tps,
                "reading": self.reading,
            }


# (name, type, help); the label sets are written where the samples are.
FAMILIES = {
    "localctx_kv_cells": (
        "gauge",
        "KV cache cells (one per token) held by the loaded session, "
        "by region: sink, pinned, recalled, window, free.",
    ),
    "localctx_kv_window_cells": ("gauge", "Size of the sink window, in cells."),
    "localctx_kv_bytes_used": ("gauge", "Bytes of K and V the used cells take."),
    "localctx_kv_bytes_allocated": ("gauge", "Bytes llama.cpp allocated for K and V."),
    "localctx_kv_bytes_per_token": (
        "gauge",
        "KV bytes one token takes (llama.cpp's allocation divided by its cells).",
    ),
    "localctx_kv_evictions_total": ("counter", "Blocks the sink window evicted."),
    "localctx_tokens_total": (
        "counter",
        "Tokens by kind: prompt_decoded (decoded for a request), "
        "prompt_cached (already in the KV cache), completion (generated), "
        "summary (decoded to write summaries), context (of prompt_decoded: "
        "decoded to start, resume or rebuild a session's context).",
    ),
    "localctx_prefill_tokens_per_second": ("gauge", "Prompt decode speed of the last turn."),
    "localctx_decode_tokens_per_second": ("gauge", "Generation speed of the last turn."),
    "localctx_time_to_first_token_seconds": (
        "histogram",
        "From request arrival (queueing included) to the first generated token.",
    ),
    "localctx_queue_depth": ("gauge", "Requests waiting for the model."),
    "localctx_queue_limit": ("gauge", "Waiting requests above which the server answers 503."),
    "localctx_requests_in_progress": ("gauge", "Requests the model is serving (0 or 1)."),
    "localctx_requests_total": (
        "counter",
        "Requests by endpoint and status (499: the client "
        "went away before the answer was complete).",
    ),
    "localctx_events_total": (
        "counter",
        "Server events: rewinds (history edits and abandoned "
        "turns), rebuilds (rewinds that re-decoded the window), summaries, "
        "sessions_opened, sessions_parked_to_disk.",
    ),
    "localctx_sessions_open": ("gauge", "Sessions held in memory (one loaded, the rest parked)."),
    "localctx_sessions_parked_bytes": ("gauge", "RAM holding the KV state of parked sessions."),
    "localctx_process_resident_bytes": ("gauge", "Resident memory of the server process."),
    "localctx_model_info": ("gauge", "The loaded model and its KV settings (always 1)."),
}


def render(snap: dict[str, Any]) -> str:
    """Prometheus text exposition of a `ServeMetrics.snapshot()`."""
    out: list[str] = []
    reading: GaugeReading | None = snap["reading"]

    def family(name: str, samples: list[tuple[dict[str, str], float]]) -> None:
        kind, text = FAMILIES[name]
        out.append(f"# HELP {name} {text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            out.append(f"{name}{_labels(labels)} {_number(value)}")

    if reading is not None:
        kv = reading.kv
        info = {
            "model": snap["model"],
            "type_k": kv.type_k,
            "type_v": kv.type_v,
            "n_ctx": str(kv.n_ctx),
            "backend": reading.backend,
        }
        family("localctx_model_info", [(info, 1)])
        family("localctx_kv_cells", [({"region": r}, v) for r, v in kv.regions.items()])
        family("localctx_kv_window_cells", [({}, kv.window or kv.n_ctx)])
        family("localctx_kv_bytes_used", [({}, kv.used_bytes)])
        family("localctx_kv_bytes_allocated", [({}, kv.total_bytes)])
        family("localctx_kv_bytes_per_token", [({}, kv.bytes_per_token)])
        family("localctx_process_resident_bytes", [({}, reading.rss_bytes)])
    events = snap["events"]
    family("localctx_kv_evictions_total", [({}, events.get("evictions", 0))])
    kinds = ("prompt_decoded", "prompt_cached", "completion", "summary", "context")
    tokens = snap["tokens"]
    family("localctx_tokens_total", [({"kind": k}, tokens.get(k, 0)) for k in kinds])
    family("localctx_prefill_tokens_per_second", [({}, snap["prefill_tps"])])
    family("localctx_decode_tokens_per_second", [({}, snap["decode_tps"])])
    hist: Histogram = snap["ttft"]
    name = "localctx_time_to_first_token_seconds"
    kind, text = FAMILIES[name]
    out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
    running = 0
    for bound, count in zip((*hist.buckets, float("inf")), hist.counts, strict=True):
        running += count
        out.append(f'{name}_bucket{{le="{_number(bound)}"}} {running}')
    out.append(f"{name}_sum {_number(hist.total)}")
    out.append(f"{name}_count {hist.n}")
    family("localctx_queue_depth", [({}, snap["queue_depth"])])
    family("localctx_queue_limit", [({}, snap["queue_limit"])])
    family("localctx_requests_in_progress", [({}, snap["in_progress"])])
    family(
        "localctx_requests_total",
        [({"endpoint": e, "status": s}, n) for (e, s), n in sorted(snap["requests"].items())],
    )
    others = sorted(k for k in events if k != "evictions")
    family("localctx_events_total", [({"event": k}, events[k]) for k in others])
    family("localctx_sessions_open", [({}, snap["sessions_open"])])
    family("localctx_sessions_parked_bytes", [({}, snap["parked_bytes"])])
    return "\n".join(out) + "\n"


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(round(float(value), 6))
