"""The headless parts the app drives, behind small blocking calls that workers run.

Each call here may block (load a model, search a store, walk a repository), so only thread
workers call them. They reach the core through its public API; a plain `Session(engine)` (no
stores, as in tests) answers memory commands with a clear LocalctxError instead of an
AttributeError. Nothing here touches a widget.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from localctx.engine.base import Engine, EngineSettings
from localctx.errors import BadInput
from localctx.tui.settings import ChatSettings

EngineFactory = Callable[[EngineSettings], Engine]
SessionFactory = Callable[[Engine, ChatSettings], Any]
IngestProgress = Callable[[int, "int | None", str], None]  # files seen, total, current file


class Sampler(Protocol):
    def sample(self) -> Any: ...


SamplerFactory = Callable[[Engine, Any], Sampler]


class NoMemoryStore(BadInput):
    """A memory command on a session opened without stores."""


# ------------------------------------------------------------------ model and session
def default_session(engine: Engine, settings: ChatSettings) -> Any:
    """A session over the on-disk stores: resumed by name, with the repo attached if any."""
    from localctx.session import Session

    repo = None
    if settings.repo is not None:
        from localctx.ingest import attach

        repo = attach(settings.repo, token_counter=lambda text: len(engine.tokenize(text)))
    name = settings.session_name or new_session_name()
    return Session.open(engine, name=name, window=settings.window, repo=repo)


def new_session_name() -> str:
    """A fresh name: the time, plus a suffix so two /clear in one second do not collide."""
    return time.strftime("session-%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def close_session(session: Any) -> list[str]:
    """Save the session's KV snapshot and close its stores; returns notices worth showing."""
    if session is None:
        return []
    close = getattr(session, "close", None)
    if close is not None:
        close()
    notices = list(getattr(session, "notices", []) or [])
    for owner in (session, getattr(session, "repo", None)):
        store = getattr(owner, "store", None)
        if store is not None and hasattr(store, "close"):
            store.close()
    return notices


def prepare(session: Any) -> None:
    """Start or resume the context now (pinned region, replayed history, pending summaries),
    so the first answer does not pay for it and the gauge shows the layout at once."""
    prepare_turn = getattr(session, "prepare_turn", None)
    if prepare_turn is not None:
        prepare_turn()


class SessionGauge:
    """The gauge sampler, pointed at the session's current sink window on every sample.

    The session creates its policy when the context starts (and anew after /window or a
    rebuild), after the sampler was built — which must happen before decoding starts.
    """

    def __init__(self, engine: Engine, session: Any) -> None:
        from localctx.gauge import GaugeSampler

        self.session = session
        self.sampler = GaugeSampler(engine, policy=getattr(session, "policy", None))

    def sample(self) -> Any:
        self.sampler.policy = getattr(self.session, "policy", None)
        return self.sampler.sample()


def default_sampler(engine: Engine, session: Any) -> Sampler:
    return SessionGauge(engine, session)


def reload_settings(settings: ChatSettings, **changes: Any) -> ChatSettings:
    """New settings for /model NAME or /kv TYPE, resolved by the same rules as the CLI."""
    from localctx.runconfig import run_config

    current = settings.engine
    model = changes.get("model") or settings.model_name
    kv = changes.get("kv") or (current.type_k if current else None)
    keep_ctx = current is not None and "model" not in changes
    config = run_config(
        model=model,
        kv=kv,
        n_ctx=current.n_ctx if keep_ctx and current else None,
        window=settings.window if keep_ctx else None,
        threads=current.n_threads if current else None,
        gpu_layers=current.n_gpu_layers if current else None,
        force=current.force if current else False,
        rpc=current.rpc_servers if current else None,  # /model and /kv keep the RPC servers
    )
    return replace(settings, engine=config.settings, model_name=model, window=config.window)


# ------------------------------------------------------------------ memory
def _store(session: Any, what: str) -> Any:
    store = getattr(session, "store", None)
    if store is None:
        raise NoMemoryStore(f"{what} needs a memory store; this session was opened without one")
    return store


def remember(session: Any, text: str) -> str:
    _store(session, "/remember")
    cid = session.remember(text)
    return f"pinned to core memory as `c{cid}` (in context from the next turn): {text}"


def forget(session: Any, target: str) -> str:
    _store(session, "/forget")
    gone = session.forget(target)
    ids = list(getattr(gone, "ids", ()))
    if not ids:
        return f"nothing in memory matches `{target}`"
    shown = ", ".join(f"`{i}`" for i in ids[:12]) + (" …" if len(ids) > 12 else "")
    return f"forgot {len(ids)} item{'s' if len(ids) != 1 else ''}: {shown}"


def recall(session: Any, query: str, k: int = 8) -> list[Any]:
    """What memory holds for `query`: recall-store hits, then repo chunks when one is attached."""
    hits: list[Any] = list(_store(session, "/recall").search(query, k))
    repo = getattr(session, "repo", None)
    if repo is not None:
        hits.extend(repo.search(query, k))
    return hits


def memory_rows(session: Any, query: str, limit: int = 200) -> list[Any]:
    """Rows for the memory screen: search results for `query`, or the newest items."""
    if query:
        return recall(session, query, k=50)
    return list(_store(session, "the memory screen").list_items(limit))


# ------------------------------------------------------------------ repositories and plans
def check_repo(path_text: str) -> Path:
    path = Path(path_text).expanduser()
    if not path.exists():
        raise BadInput(f"no such directory: {path}")
    if not path.is_dir():
        raise BadInput(f"not a directory: {path}")
    return path.resolve()


def ingest(path: Path, progress: IngestProgress) -> str:
    """Index `path` into archival memory; returns one line of figures for the transcript."""
    from localctx.ingest import ingest_repo
    from localctx.memory.archival import ArchivalStore

    with ArchivalStore.open() as store:
        report = ingest_repo(
            path, store, on_progress=lambda p: progress(p.files_seen, None, p.relpath)
        )
    skipped = sum(report.skipped.values())
    return (
        f"indexed {report.files_indexed} files ({report.files_unchanged} unchanged, "
        f"{skipped} skipped), {report.chunks} chunks in {report.seconds:.1f} s "
        f"({report.files_per_second:.0f} files/s) from `{report.repo}`"
    )


def plan_markdown(settings: ChatSettings) -> str:
    """The planner's table for the current model and context, as Markdown."""
    from localctx.planner import plan_model
    from localctx.tui.widgets.gauge.bars import human_bytes

    if settings.engine is None:
        raise BadInput("no model loaded")
    engine = settings.engine
    plan = plan_model(engine.model_path, engine.n_ctx)
    rec = plan.recommendation
    lines = [
        f"**{plan.model}** at {plan.ctx:,} tokens on {plan.target.name}: "
        f"KV **{rec.type_k}/{rec.type_v}**, ctx **{rec.n_ctx:,}**, "
        f"window **{rec.window or 'none'}**, {rec.n_gpu_layers} GPU layers. {rec.reason}",
        "",
        "| KV | ctx | KV bytes | bytes/token | total | fits |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in plan.rows:
        fits = ", ".join(d for d, ok in row.fits.items() if ok) or "nowhere"
        lines.append(
            f"| {row.kv} | {row.ctx:,} | {human_bytes(row.kv_bytes)} "
            f"| {row.kv_bytes_per_token:,} | {human_bytes(row.total_bytes)} | {fits} |"
        )
    return "\n".join(lines)


def save_session(session: Any) -> str:
    """On quit or /session: write the KV snapshot and say what was kept."""
    if getattr(session, "store", None) is None:
        close_session(session)
        return "this session had no memory store; nothing was saved"
    notices = close_session(session)
    name = getattr(session, "name", "") or "session"
    kept = f"session `{name}` saved ({len(getattr(session, 'messages', []))} messages)"
    return "; ".join([kept, *notices])
