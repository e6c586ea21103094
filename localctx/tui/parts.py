"""The headless parts the app drives, behind small blocking calls that workers run.

Each call here may block (load a model, search a store, walk a repository), so only thread
workers call them. They reach the core through its public names and say plainly when a part
is missing from this build (NotYetAvailable), so a command never fails with an AttributeError.
Nothing here touches a widget.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from localctx.engine.base import Engine, EngineSettings
from localctx.errors import BadInput, NotYetAvailable
from localctx.tui.settings import ChatSettings

EngineFactory = Callable[[EngineSettings], Engine]
SessionFactory = Callable[[Engine, ChatSettings], Any]


class Sampler(Protocol):
    def sample(self) -> Any: ...


SamplerFactory = Callable[[Engine, Any], Sampler]


def _find(module: str, *names: str) -> Any:
    """The first of `names` that `module` defines; NotYetAvailable when none is there."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        mod = None
    for name in names:
        found = getattr(mod, name, None)
        if found is not None:
            return found
    raise NotYetAvailable(f"{module}.{names[0]} is not available in this build")


def _call_with(func: Callable[..., Any], *args: Any, **optional: Any) -> Any:
    """Call `func`, passing only the optional keywords its signature accepts."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        params = {}
    accepts_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in optional.items() if v is not None and (accepts_all or k in params)}
    return func(*args, **kwargs)


# ------------------------------------------------------------------ model and session
def default_session(engine: Engine, settings: ChatSettings) -> Any:
    """A Session on `engine`, resumed by name and attached to the repo when the core can."""
    from localctx.session import Session

    opener = getattr(Session, "open", None) or Session
    return _call_with(
        opener,
        engine,
        window=settings.window,
        repo=settings.repo,
        name=settings.session_name,
        session_name=settings.session_name,
    )


def default_sampler(engine: Engine, session: Any) -> Sampler:
    """The gauge's sampler when the core has one; else readings taken from the engine here."""
    try:
        sampler_cls = _find("localctx.gauge", "GaugeSampler")
    except NotYetAvailable:
        return EngineReadings(engine, session)
    return _call_with(sampler_cls, engine, policy=getattr(session, "policy", None))


class EngineReadings:
    """Readings from the engine's own bookkeeping and psutil: RAM, KV cells held, tok/s.

    Used when no GaugeSampler is available. Regions other than window/free need the KV policy,
    so without it every held cell counts as window.
    """

    def __init__(self, engine: Engine, session: Any) -> None:
        import psutil

        self.engine, self.session = engine, session
        self._process = psutil.Process(os.getpid())
        self._psutil = psutil

    def sample(self) -> dict[str, Any]:
        engine = self.engine
        alloc = engine.kv_allocation()
        held = engine.cells_used
        mem = self._psutil.virtual_memory()
        stats = engine.stats
        return {
            "backend": engine.backend_info().get("backend", "cpu"),
            "ram": {"rss": self._process.memory_info().rss, "used": mem.used, "total": mem.total},
            "kv": {
                "n_ctx": engine.n_ctx,
                "cells_used": held,
                "cells": {"window": held, "free": max(engine.n_ctx - held, 0)},
                "bytes": alloc.total_bytes,
                "bytes_per_token": alloc.total_bytes / engine.n_ctx if engine.n_ctx else None,
                "type": engine.settings.type_k,
                "tokens_seen": engine.n_past,
            },
            "prefill_tps": stats.prefill_tps or None,
            "decode_tps": stats.decode_tps or None,
        }


def reload_settings(settings: ChatSettings, **changes: Any) -> ChatSettings:
    """New settings for /model NAME, /kv TYPE (a reload): resolved by the CLI's own rules."""
    from dataclasses import replace

    from localctx.runconfig import engine_settings

    current = settings.engine
    model = changes.get("model") or settings.model_name
    kv = changes.get("kv") or (current.type_k if current else None)
    n_ctx = None if "model" in changes else (current.n_ctx if current else None)
    resolved = engine_settings(model=model, kv=kv, n_ctx=n_ctx)
    return replace(settings, engine=resolved, model_name=model)


# ------------------------------------------------------------------ memory
def remember(session: Any, text: str) -> str:
    method = getattr(session, "remember", None)
    if method is None:
        raise NotYetAvailable("/remember needs the tiered memory, not available in this build")
    result = method(text)
    return f"pinned to core memory{f' as {result}' if result is not None else ''}: {text}"


def forget(session: Any, target: str) -> str:
    method = getattr(session, "forget", None)
    if method is None:
        raise NotYetAvailable("/forget needs the tiered memory, not available in this build")
    result = method(target)
    count = result if isinstance(result, int) else len(result or ())
    return f"forgot {count} item{'s' if count != 1 else ''} matching '{target}'"


def recall(session: Any, query: str) -> list[Any]:
    method = getattr(session, "recall", None)
    if method is None:
        raise NotYetAvailable("/recall needs the tiered memory, not available in this build")
    return list(method(query) or ())


def memory_rows(session: Any, query: str) -> list[Any]:
    """Rows for the memory screen: search results for `query`, or the latest items if empty."""
    if query:
        method = getattr(session, "search_memory", None) or getattr(session, "recall", None)
    else:
        method = getattr(session, "memory_items", None) or getattr(session, "list_memory", None)
    if method is None:
        raise NotYetAvailable("the memory screen needs the tiered memory, not in this build")
    return list((method(query) if query else method()) or ())


# ------------------------------------------------------------------ repositories and plans
def check_repo(path_text: str) -> Path:
    path = Path(path_text).expanduser()
    if not path.exists():
        raise BadInput(f"no such directory: {path}")
    if not path.is_dir():
        raise BadInput(f"not a directory: {path}")
    return path.resolve()


def ingest(path: Path, progress: Callable[[int, int | None, str], None]) -> str:
    """Index `path` into archival memory; returns one line of figures for the transcript."""
    run = _find("localctx.ingest", "ingest", "ingest_repo", "run_ingest")
    result = _call_with(run, path, progress=progress)
    data = result.to_json() if hasattr(result, "to_json") else dict(result or {})
    files, chunks = data.get("files_indexed", "?"), data.get("chunks", "?")
    seconds, fps = data.get("seconds"), data.get("files_per_second")
    timing = f" in {seconds:.1f} s ({fps:.0f} files/s)" if seconds and fps else ""
    return f"indexed {files} files, {chunks} chunks{timing} from {path}"


def attach_repo(session: Any, path: Path) -> str:
    attach = getattr(session, "attach_repo", None) or getattr(session, "attach", None)
    if attach is None:
        attach_fn = _find("localctx.ingest", "attach")
        result = _call_with(attach_fn, path, session=session)
    else:
        result = attach(path)
    tokens = getattr(result, "tokens", None) or getattr(result, "n_tokens", None)
    digest = f" (digest {tokens} tokens pinned)" if tokens else ""
    return f"attached {path}{digest}"


def plan_markdown(settings: ChatSettings) -> str:
    """The planner's table for the current model and context, as Markdown."""
    if settings.engine is None:
        raise BadInput("no model loaded")
    run = _find("localctx.planner", "plan", "make_plan", "plan_model")
    engine = settings.engine
    result = _call_with(run, engine.model_path, ctx=engine.n_ctx, n_ctx=engine.n_ctx)
    data = result.to_json() if hasattr(result, "to_json") else dict(result)
    rec = data.get("recommendation", {})
    lines = [
        f"Recommendation: KV **{rec.get('type_k', '?')}/{rec.get('type_v', '?')}**, "
        f"ctx **{rec.get('n_ctx', '?')}**, window **{rec.get('window') or 'none'}**",
        "",
        "| kv | ctx | KV bytes | bytes/token | total | fits |",
        "|---|---|---|---|---|---|",
    ]
    from localctx.tui.widgets.gauge.bars import human_bytes

    for row in data.get("rows", []):
        fits = ", ".join(d for d, ok in (row.get("fits") or {}).items() if ok) or "none"
        lines.append(
            f"| {row.get('kv')} | {row.get('ctx')} | {human_bytes(row.get('kv_bytes'))} "
            f"| {row.get('kv_bytes_per_token', 0):,.0f} | {human_bytes(row.get('total_bytes'))} "
            f"| {fits} |"
        )
    return "\n".join(lines)


def save_session(session: Any) -> str:
    """Write the session (messages, summary, KV snapshot) if the core can; say what was kept."""
    for name in ("save", "save_snapshot", "close"):
        method = getattr(session, name, None)
        if method is not None:
            result = method()
            return str(result) if result else "session saved"
    return "this build keeps no sessions on disk; the transcript was not saved"
