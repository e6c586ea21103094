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
from typing import TYPE_CHECKING, Any, Protocol

from localctx.engine.base import Engine, EngineSettings
from localctx.errors import BadInput
from localctx.kv.scoring import needs_queries
from localctx.tui.settings import ChatSettings

if TYPE_CHECKING:  # imported where used: the session pulls in the memory tiers
    from localctx.gauge import GaugeReading
    from localctx.memory.recall import RecallStore
    from localctx.session import Session

EngineFactory = Callable[[EngineSettings], Engine]
SessionFactory = Callable[[Engine, ChatSettings], "Session"]
IngestProgress = Callable[[int, "int | None", str], None]  # files seen, total, current file


class Sampler(Protocol):
    def sample(self) -> GaugeReading: ...


SamplerFactory = Callable[[Engine, "Session | None"], Sampler]


class NoMemoryStore(BadInput):
    """A memory command on a session opened without stores."""


# ------------------------------------------------------------------ model and session
def default_session(
    engine: Engine, settings: ChatSettings, progress: IngestProgress | None = None
) -> Session:
    """A session over the on-disk stores: resumed by name, with the repo attached if any
    (ingested first when it changed: `progress` hears each file). The session owns both:
    its `close` releases them."""
    from localctx.session import Session

    repo = None
    if settings.repo is not None:
        from localctx.ingest import attach

        repo = attach(
            settings.repo,
            token_counter=lambda text: len(engine.tokenize(text)),
            on_progress=(lambda p: progress(p.files_seen, None, p.relpath)) if progress else None,
        )
    name = settings.session_name or new_session_name()
    return Session.open(
        engine,
        name=name,
        window=settings.window,
        repo=repo,
        evict=settings.evict,
        recent=settings.recent,
        owns_repo=repo is not None,
    )


def new_session_name() -> str:
    """A fresh name: the time, plus a suffix so two /clear in one second do not collide."""
    return time.strftime("session-%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def close_session(session: Session | None) -> list[str]:
    """Save the session's KV snapshot and release what it opened (Session.close: whoever
    opens a store closes it); returns notices worth showing."""
    if session is None:
        return []
    session.close()
    return list(session.notices)


def prepare(session: Session) -> None:
    """Start or resume the context now (pinned region, replayed history, pending summaries),
    so the first answer does not pay for it and the gauge shows the layout at once."""
    session.prepare_turn()


class SessionGauge:
    """The gauge sampler, pointed at the session's current sink window on every sample.

    The session creates its policy when the context starts (and anew after /window or a
    rebuild), after the sampler was built — which must happen before decoding starts. Tokens
    seen and evictions are the session's totals, so a rebuild does not reset them.
    """

    def __init__(self, engine: Engine, session: Session | None) -> None:
        from localctx.gauge import GaugeSampler

        self.session = session
        self.sampler = GaugeSampler(engine, policy=session.policy if session else None)

    def sample(self) -> GaugeReading:
        session = self.session
        self.sampler.policy = session.policy if session is not None else None
        reading = self.sampler.sample()
        if session is None or self.sampler.policy is None:
            return reading
        seen, evictions = session.stream_totals()  # a rebuild restarts the window's own
        return replace(reading, kv=replace(reading.kv, tokens_seen=seen, evictions=evictions))


def default_sampler(engine: Engine, session: Session | None) -> Sampler:
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
    engine = replace(config.settings, capture_queries=needs_queries(settings.evict))
    return replace(settings, engine=engine, model_name=model, window=config.window)


# ------------------------------------------------------------------ memory
def _loaded(session: Session | None) -> Session:
    if session is None:
        raise BadInput("no session: the model is not loaded")
    return session


def _store(session: Session, what: str) -> RecallStore:
    store = session.store
    if store is None:
        raise NoMemoryStore(f"{what} needs a memory store; this session was opened without one")
    return store


def remember(session: Session | None, text: str) -> str:
    session = _loaded(session)
    _store(session, "/remember")
    cid = session.remember(text)
    total = core_total(session)
    return f"pinned to core memory as `c{cid}` (in context from the next turn; {total}): {text}"


def core_total(session: Session) -> str:
    """`core memory 45/128 tokens`: core memory is in every context, so its size is shown."""
    return f"core memory {session.core_tokens():,}/{session.core_budget:,} tokens"


def forget(session: Session | None, target: str) -> str:
    session = _loaded(session)
    _store(session, "/forget")
    ids = list(session.forget(target).ids)
    if not ids:
        return f"nothing in memory matches `{target}`"
    shown = ", ".join(f"`{i}`" for i in ids[:12]) + (" …" if len(ids) > 12 else "")
    return f"forgot {len(ids)} item{'s' if len(ids) != 1 else ''}: {shown}"


def recall(session: Session | None, query: str, k: int = 8) -> list[Any]:
    """What memory holds for `query`: recall-store hits, then repo chunks when one is attached."""
    session = _loaded(session)
    hits: list[Any] = list(_store(session, "/recall").search(query, k))
    repo = session.repo
    if repo is not None:
        hits.extend(repo.search(query, k))
    return hits


def memory_rows(session: Session | None, query: str, limit: int = 200) -> list[Any]:
    """Rows for the memory screen: search results for `query`, or the newest items."""
    session = _loaded(session)
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


def save_session(session: Session) -> str:
    """On quit or /session: write the KV snapshot and say what was kept, and how to resume."""
    if session.store is None:
        close_session(session)
        return "this session had no memory store; nothing was saved"
    notices = close_session(session)
    name = session.name or "session"
    kept = f"session `{name}` saved ({len(session.messages)} messages)"
    return "; ".join([kept, *notices]) + f"\nresume it with: localctx chat --session {name}"


def kept_without_snapshot(session: Session | None) -> str:
    """Ctrl+Q while the model could not be stopped (a model still loading): the messages are
    committed as they are written, only the KV snapshot is missing."""
    name = (session.name if session is not None else None) or "session"
    return (
        f"session `{name}`: its messages are kept; the KV snapshot was not written (the model "
        f"was busy), so resuming re-reads the newest messages\n"
        f"resume it with: localctx chat --session {name}"
    )


# ------------------------------------------------------------------ pickers
def list_sessions(limit: int = 200) -> list[Any]:
    """Saved conversations, newest first (the sessions picker, F4)."""
    from localctx.memory.recall import RecallStore

    with RecallStore() as store:
        return [s for s in store.sessions(limit) if not s.name.startswith("ask-")]


def list_models(settings: ChatSettings) -> list[tuple[Any, str]]:
    """Catalogue entries with a fit line each: the planner's choice for an installed model
    (it reads the GGUF header only), the weights against free memory for a pullable one."""
    import psutil

    from localctx.models.catalogue import Catalogue
    from localctx.planner import plan_model
    from localctx.tui.widgets.gauge.bars import human_bytes, human_count

    ctx = settings.engine.n_ctx if settings.engine is not None else 8192
    free = psutil.virtual_memory().available
    rows: list[tuple[Any, str]] = []
    for entry in Catalogue.load().entries.values():
        if entry.installed:
            try:
                rec = plan_model(entry.path, ctx, contexts=()).recommendation
            except Exception as exc:  # a bad file shows why instead of hiding the picker
                rows.append((entry, f"cannot plan: {exc}"))
                continue
            window = f", window {human_count(rec.window)}" if rec.window else ""
            fit = "fits" if rec.fits else "does not fit"
            rows.append(
                (entry, f"{fit}: ctx {human_count(rec.n_ctx)} {rec.type_k}{window}, "
                 f"{human_bytes(rec.total_bytes)}")
            )  # fmt: skip
        else:
            need = human_bytes(entry.size) if entry.size else "size unknown"
            ok = "fits" if entry.size and entry.size < free else "check"
            rows.append((entry, f"pull {need}; {ok} in {human_bytes(free)} free RAM"))
    return rows
