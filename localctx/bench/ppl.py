"""`bench ppl`: perplexity over the first N tokens of a text, through the real sink window.

The text is fed in chunks; before each chunk the SinkWindow makes room for it, so every logit
is computed with exactly the cache the window left (sinks + pinned + survivors). `full` skips
the window and keeps every token (the unevicted baseline). All inputs are checked before the
model is loaded or any figure is computed: a bad run reports nothing rather than a partial
figure.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from localctx.bench.settings import bench_settings
from localctx.bench.texts import default_prose
from localctx.engine import load_engine
from localctx.engine.base import Engine
from localctx.engine.cachetypes import cache_type, check_cache_types
from localctx.errors import BadInput
from localctx.kv.policy import SinkWindow
from localctx.kv.scoring import POLICIES, make_scorer, needs_queries
from localctx.models.ggufmeta import read_gguf

DEFAULT_CHUNK = 64  # tokens per decode: small enough to evict in step with the text


def default_text_path() -> Path | None:
    """The prose shipped in the repository (localctx.bench.texts)."""
    return default_prose()


@dataclass(frozen=True)
class PplResult:
    ppl: float
    tokens: int
    window: int | None  # None with --full
    sinks: int
    kv: str
    peak_cells: int
    evictions: int
    seconds: float
    model: str = ""
    chunk: int = DEFAULT_CHUNK
    mode: str = "shift"  # "full", "shift" or "reprefill"
    evict: str = "window"  # the eviction policy (kv/scoring.py)
    gaps: int = 0  # scattered runs the cache held at the end
    recent: int | None = None  # newest tokens a scored policy never evicted (None: window)
    score_seconds: float = 0.0  # of `seconds`, spent scoring cells

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_text(path: Path) -> str:
    """The text of a prose file; BadInput when it is missing, empty or binary."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read the text file {path}: {exc.strerror or exc}") from None
    if b"\0" in data[:65536]:
        raise BadInput(f"{path} looks binary (it holds NUL bytes): give a text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{path} is not UTF-8 text: give a text file") from None
    if not text.strip():
        raise BadInput(f"{path} is empty")
    return text


def first_tokens(engine: Engine, text: str, n: int, *, source: str = "the text") -> list[int]:
    """The first n tokens of text (BOS included when the model adds one)."""
    # ~4 characters per token in English prose; tokenize a generous prefix, not 400 KB.
    tokens = engine.tokenize(text[: n * 8 + 1024], add_special=True)
    if len(tokens) < n and len(text) > n * 8 + 1024:
        tokens = engine.tokenize(text, add_special=True)
    if len(tokens) < n:
        raise BadInput(f"{source} has {len(tokens)} tokens, fewer than the {n} asked for")
    return tokens[:n]


def check_args(
    model_path: Path, *, tokens: int, window: int, sinks: int, kv: str, full: bool, chunk: int
) -> None:
    if tokens < 2:
        raise BadInput(f"--tokens must be at least 2, got {tokens}")
    if sinks < 0:
        raise BadInput(f"--sinks must be 0 or more, got {sinks}")
    if chunk < 1:
        raise BadInput(f"chunk must be at least 1, got {chunk}")
    if not full and window < sinks + chunk:
        raise BadInput(
            f"--window {window} is smaller than {sinks} sinks + one batch of {chunk} tokens"
        )
    meta = read_gguf(model_path)
    name = cache_type(kv).name
    check_cache_types(name, name, (meta.key_length, meta.value_length))


def run_ppl(
    model_path: Path,
    text: str,
    *,
    tokens: int,
    window: int,
    sinks: int,
    kv: str = "f16",
    full: bool = False,
    chunk: int = DEFAULT_CHUNK,
    n_threads: int | None = None,
    force_fallback: bool = False,
    swa_full: bool = False,
    source: str = "the text",
    evict: str = "window",
    recent: int | None = None,
) -> PplResult:
    check_args(model_path, tokens=tokens, window=window, sinks=sinks, kv=kv, full=full, chunk=chunk)
    kv = cache_type(kv).name
    settings = bench_settings(
        model_path=model_path,
        n_ctx=tokens if full else window,
        type_k=kv,
        type_v=kv,
        n_threads=n_threads,
        swa_full=swa_full,
        capture_queries=needs_queries(evict),
    )
    if evict not in POLICIES:
        raise BadInput(f"unknown eviction policy {evict!r}: choose one of {', '.join(POLICIES)}")
    with load_engine(settings) as engine:
        ids = first_tokens(engine, text, tokens, source=source)
        start = time.perf_counter()
        policy = None
        if not full:
            policy = SinkWindow(
                engine,
                window=window,
                n_sink=sinks,
                batch=chunk,
                force_fallback=force_fallback,
                scorer=make_scorer(evict, engine, window),
                recent=recent,
            )
        nll = 0.0
        step = chunk if policy else engine.settings.n_batch
        for i in range(0, len(ids), step):
            piece = ids[i : i + step]
            if policy:
                policy.make_room(len(piece))
            logits = engine.decode_all_logits(piece)
            targets = ids[i + 1 : i + len(piece) + 1]
            nll += _nll(logits[: len(targets)], targets)
        seconds = time.perf_counter() - start
        stats = policy.stats() if policy else None
        return PplResult(
            ppl=math.exp(nll / (len(ids) - 1)),
            tokens=len(ids),
            window=None if full else window,
            sinks=sinks,
            kv=kv,
            peak_cells=stats.peak_cells if stats else engine.cells_used,
            evictions=stats.evictions if stats else 0,
            seconds=round(seconds, 2),
            model=engine.model_name,
            chunk=step,
            mode=stats.mode if stats else "full",
            evict=stats.policy if stats else "none",
            gaps=stats.gaps if stats else 0,
            recent=policy.recent if policy is not None and policy.scorer is not None else None,
            score_seconds=stats.score_seconds if stats else 0.0,
        )


def _nll(logits: np.ndarray, targets: list[int]) -> float:
    """Sum of -log p(target) under softmax(logits), row by row (float64 for the sum)."""
    if not targets:
        return 0.0
    x = logits.astype(np.float64)
    top = x.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(x - top).sum(axis=1)) + top[:, 0]
    picked = x[np.arange(len(targets)), targets]
    return float((log_z - picked).sum())
