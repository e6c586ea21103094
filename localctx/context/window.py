"""The KV policy a context runs: the sink window (or a scored policy), seen through a view the
gauge can read from another thread while the cache is lent to the summarizer.

Must not: decode outside the policy's own calls, or touch a store.
"""

from __future__ import annotations

import threading
from typing import Any

from localctx.engine.base import Engine


class WindowView:
    """What the session exposes as `session.policy`: the sink window itself, except that while
    the cache is lent to the summarizer, `stats()` and `regions` answer from the last reading.

    Why: the gauge reads the window from a timer thread, and the window re-syncs its records
    with the engine on every read; mid-summary the engine holds the summarizer's prompt, and a
    re-sync then would rewrite the window's bookkeeping. The lock makes `freeze` a barrier: once
    it returns, no reader is inside the window.
    """

    def __init__(self, window: Any) -> None:
        self.window_policy = window
        self._lock = threading.Lock()
        self._frozen: tuple[Any, dict[str, tuple[int, int]]] | None = None

    def stats(self) -> Any:
        with self._lock:
            return self._frozen[0] if self._frozen else self.window_policy.stats()

    @property
    def regions(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            return self._frozen[1] if self._frozen else self.window_policy.regions

    def freeze(self) -> None:
        with self._lock:
            self._frozen = (self.window_policy.stats(), self.window_policy.regions)

    def thaw(self) -> None:
        with self._lock:
            self._frozen = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.window_policy, name)


def make_policy(
    engine: Engine, *, window: int, n_sink: int, evict: str = "window", recent: int | None = None
) -> Any:
    """The sink window (seen through a WindowView), or None when the KV policy is missing;
    `evict` names its eviction policy (kv/scoring.py: window, keynorm, snapkv, h2o)."""
    try:
        from localctx.kv.policy import SinkWindow
        from localctx.kv.scoring import make_scorer
    except ImportError:
        return None
    scorer = make_scorer(evict, engine, window)
    if recent is None:
        return WindowView(SinkWindow(engine, window=window, n_sink=n_sink, scorer=scorer))
    policy = SinkWindow(engine, window=window, n_sink=n_sink, scorer=scorer, recent=recent)
    return WindowView(policy)
