"""ChatSettings: everything the chat app needs to know at start, resolved once by the CLI.

Widgets never read the environment or the command line; they get this frozen object. A field
that can change while the app runs (/model, /kv, /window, /repo, /session) produces a new
ChatSettings through `dataclasses.replace`, so the old one stays valid for whoever holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from localctx.engine.base import EngineSettings, Sampling


@dataclass(frozen=True)
class ChatSettings:
    """How the chat app starts. `engine` is None when no model is installed yet."""

    engine: EngineSettings | None
    """What to load: model file, context size, KV types. None: offer to pull `model_name`."""

    model_name: str | None = None
    """The catalogue name or path the user asked for (None: the catalogue default)."""

    window: int | None = None
    """Sink-window size in tokens (None: the KV policy's default for this context)."""

    evict: str = "window"
    """The sink window's eviction policy: window (oldest block), keynorm, snapkv or h2o."""

    recent: int | None = None
    """Newest tokens a scored eviction policy never evicts (None: its default)."""

    repo: Path | None = None
    """A repository to chat over: its digest is pinned and its chunks are recalled."""

    session_name: str | None = None
    """Resume or name a session; its messages and KV snapshot are restored when they match."""

    sampling: Sampling = field(default_factory=Sampling)
    """Sampling for replies (greedy by default, so answers are reproducible)."""

    gauge_busy_interval: float = 0.4
    """Seconds between gauge readings while generating: 2.5 Hz, above the 2 Hz the UI promises."""

    gauge_idle_interval: float = 2.0
    """Seconds between gauge readings when idle: RAM still moves, the KV cache does not."""

    token_flush_interval: float = 0.15
    """Seconds between transcript updates while streaming: ~7 updates/s whatever the tok/s."""

    show_gauge: bool = True
    """Whether the gauge and context side panel starts open (F2 toggles it)."""
