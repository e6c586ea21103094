"""How close the planner's predictions come to what llama.cpp and the OS really use.

- KV bytes: the prediction from GGUF metadata vs llama.cpp's own report when it creates the
  context (engine.kv_allocation(), parsed from its log), per model x cache type x context.
- Totals: the plan's total vs the RSS a fresh process grows by when it loads the model and
  prefills one 512-token ubatch (which touches the compute buffer a chat uses). Measured in a
  subprocess whose baseline is taken after llama.cpp's libraries are loaded, so neither other
  work in this process nor the library's own code pages count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localctx.engine import EngineSettings, load_engine
from localctx.models.catalogue import Catalogue
from localctx.planner.devices import DeviceBudget
from localctx.planner.kvmath import kv_sizing
from localctx.planner.plan import make_plan
from localctx.planner.shape import load_shape

MODELS = ("smollm2-135m", "gemma3-270m")
KV_TYPES = ("f16", "q8_0", "q4_0")
_ANY_CPU = DeviceBudget("cpu", "cpu", 2**50, 2**50, 2**50, False, "benchmark")

_FOOTPRINT = """
import json, sys
from pathlib import Path
import psutil
from localctx.engine.llama import _init_backend
from localctx.engine import EngineSettings, load_engine
_init_backend()
proc = psutil.Process()
before = proc.memory_info().rss
path, n_ctx, kv = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
threads = int(sys.argv[4]) or None
settings = EngineSettings(path, n_ctx=n_ctx, type_k=kv, type_v=kv, force=True, n_threads=threads)
engine = load_engine(settings)
loaded = proc.memory_info().rss
text = " ".join(f"Line {i}: a prompt long enough to fill one ubatch." for i in range(300))
engine.decode(engine.tokenize(text)[:512])
print(json.dumps({"load": loaded - before, "after_prefill": proc.memory_info().rss - before}))
"""


def measured_footprint(
    path: Path, n_ctx: int, kv: str, *, threads: int | None = None
) -> dict[str, int]:
    """RSS growth of a fresh process: after load, and after a 512-token prefill."""
    out = subprocess.run(
        [sys.executable, "-c", _FOOTPRINT, str(path), str(n_ctx), kv, str(threads or 0)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    measured: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return measured


def predicted_total(path: Path, n_ctx: int, kv: str) -> int:
    plan = make_plan(load_shape(path), n_ctx, [_ANY_CPU], _ANY_CPU)
    return next(r.total_bytes for r in plan.rows if r.kv == kv)


def planner_accuracy(
    quick: bool = False,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """KV predictions for every type at 8K and 32K; totals for f16 (quick: 8K only)."""
    say = progress or (lambda _msg: None)
    catalogue = Catalogue.load()
    kv_rows: list[dict[str, Any]] = []
    total_rows: list[dict[str, Any]] = []
    for name in MODELS:
        entry = catalogue.get(name)
        if not entry.installed:
            continue
        shape = load_shape(entry.path)
        for kv in KV_TYPES:
            for n_ctx in (8192, 32768):
                say(f"planner: {name} {kv} {n_ctx} KV")
                settings = EngineSettings(
                    entry.path, n_ctx=n_ctx, type_k=kv, type_v=kv, force=True, n_threads=threads
                )
                with load_engine(settings) as engine:
                    allocated = engine.kv_allocation().total_bytes
                predicted = kv_sizing(shape, kv, kv, n_ctx).total_bytes
                kv_rows.append(
                    {
                        "model": name,
                        "kv": kv,
                        "ctx": n_ctx,
                        "predicted": predicted,
                        "llama_cpp": allocated,
                        "error_pct": _pct(predicted, allocated),
                    }
                )
        for n_ctx in (8192,) if quick else (8192, 32768):
            say(f"planner: {name} f16 {n_ctx} footprint")
            measured = measured_footprint(entry.path, n_ctx, "f16", threads=threads)
            predicted = predicted_total(entry.path, n_ctx, "f16")
            total_rows.append(
                {
                    "model": name,
                    "kv": "f16",
                    "ctx": n_ctx,
                    "predicted": predicted,
                    "rss_after_load": measured["load"],
                    "rss_after_prefill": measured["after_prefill"],
                    "error_pct_load": _pct(predicted, measured["load"]),
                    "error_pct_prefill": _pct(predicted, measured["after_prefill"]),
                }
            )
    return {
        "kv": kv_rows,
        "totals": total_rows,
        "kv_max_error_pct": max((abs(r["error_pct"]) for r in kv_rows), default=0.0),
        "total_max_error_pct": max(
            (max(abs(r["error_pct_load"]), abs(r["error_pct_prefill"])) for r in total_rows),
            default=0.0,
        ),
    }


def _pct(predicted: int, actual: int) -> float:
    return round((predicted - actual) / actual * 100, 2) if actual else 0.0
