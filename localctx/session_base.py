"""The state one session holds, and what a front end may read of it between turns.

A Session (localctx.session) is assembled from parts that share this state, each in its own
module: the turn pipeline (session), the context's start, resume and save (lifecycle), the
memory tiers at work during and between turns (tiers), and edits of the history (history).
`SessionBase` declares every field once, builds them, and names the methods the parts call
across each other (each defined by exactly one part).

Must not: render anything, or import llama_cpp / textual.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

from localctx.context.cache import KvContext
from localctx.context.window import make_policy
from localctx.engine.base import ChatMessage, Engine, Sampling
from localctx.kv.segment import EvictedSegment
from localctx.memory.locks import SessionLock
from localctx.memory.recall import RecallStore
from localctx.memory.retrieval import RecalledItem
from localctx.memory.snapshots import SnapshotStore
from localctx.progress import ProgressCallback
from localctx.turns import EvictionReport, Exchange, TurnEvent

DEFAULT_SYSTEM = (
    "You are localctx, a helpful assistant running fully offline on the user's machine. "
    "Answer concisely and accurately."
)
RECALL_BUDGET_MAX = 1536  # tokens of recalled text per turn, at most a quarter of the window


class SessionBase:
    def __init__(
        self,
        engine: Engine,
        system_prompt: str = DEFAULT_SYSTEM,
        messages: list[ChatMessage] | None = None,
        *,
        store: RecallStore | None = None,
        snapshots: SnapshotStore | None = None,
        name: str | None = None,
        window: int | None = None,
        n_sink: int = 4,
        repo: Any = None,
        recall_budget: int | None = None,
        summary_budget: int | None = None,
        policy_factory: Callable[..., Any] | None = None,
        evict: str = "window",
        recent: int | None = None,
        recall: bool = True,
        summarize_per_turn: int = 2,
        owns_repo: bool = False,
        recall_all: bool = False,
        ephemeral: bool = False,
        expand: bool = True,
    ) -> None:
        self.engine = engine
        self.system_prompt = system_prompt
        self.messages: list[ChatMessage] = list(messages or [])
        self.store = store
        self.snapshots = snapshots
        self.name = name
        self.repo = repo  # localctx.ingest RepoContext (digest, repo, store) or None
        self.window = window if window else engine.n_ctx
        # Room for ~5 repository spans before the question when the window allows: the
        # answering lines can only help if they are inserted (512 tokens held 1-3 chunks).
        # On 2 CPU cores the extra ~1,000 tokens cost ~8 s of first token with the 0.5B.
        self.recall_budget = recall_budget or max(64, min(RECALL_BUDGET_MAX, self.window // 4))
        self.summary_budget = summary_budget or max(64, min(256, self.window // 6))
        self.last_recall: list[RecalledItem] = []
        self.last_eviction: EvictionReport | None = None
        self.evictions: list[EvictedSegment] = []  # kept only when there is no store
        self.notices: list[str] = []  # snapshot fallbacks etc., for the UI to show once
        self.running_summary = ""
        self.core: list[tuple[int, str]] = []
        # Segments summarized before a turn starts: bounds the wait (a summary is a prefill
        # plus up to 64 decoded tokens, ~3 s each with SmolLM2-135M on 2 cores); the rest wait
        # for `summarize_pending()` between turns (the UI's worker, `ask` after answering).
        self.summarize_per_turn = summarize_per_turn
        # Recall searches this session's own messages and segments (and the repository);
        # every session's only when asked (`--recall all`, the TUI's toggle).
        self.recall_all = recall_all
        # An ephemeral session (`ask` without --session) answers and leaves nothing behind.
        self.ephemeral = ephemeral
        # Code search also searches the model's guess at the answering code (memory.expand).
        self.expand = expand
        self.last_expansion = ""
        self.recall = recall  # off: nothing is recalled (a benchmark of the cache alone)
        # The eviction policy (kv/scoring.py): the window, or one that scores cells.
        factory = policy_factory or functools.partial(make_policy, evict=evict, recent=recent)
        self.context = KvContext(
            engine,
            window=self.window,
            n_sink=n_sink,
            policy_factory=factory,
            snapshots=snapshots,
            notices=self.notices,
        )
        self.context.on_segment = self._store_segment
        self._owns_repo = owns_repo
        self._owns_store = False
        self._closed = False  # `close` ran: the stores this session opened are released
        self._sid = 0
        self._recalled_seq = 0
        self._recalled_ids: dict[int, set[str]] = {}  # recalled block owner -> item ids
        self._local_ids = 0
        self._evicted_message_ids: set[int] = set()
        self._last_prompt_tokens = 0
        self._last_reused = 0
        self._lock: SessionLock | None = None  # held by Session.open for a named session
        self._turn_start = 0  # len(self.messages) before the open turn's first message
        self._last_turn: Exchange | None = None
        self._cancel: threading.Event | None = None  # set by `supervised` for one unit of work
        self._events: list[TurnEvent] = []  # the memory tiers' events of the running turn
        if store is not None:
            self._sid = store.session_id(name or "default", model=engine.model_name)
            self.running_summary = store.running_summary(self._sid)
            self.core = store.core()

    # ------------------------------------------------------------------ what the UI reads
    @property
    def session_id(self) -> int:
        return self._sid

    @property
    def policy(self) -> Any:
        """The window policy the gauge reads (a context.window.WindowView), or None."""
        return self.context.policy

    @property
    def eviction_count(self) -> int:
        """Segments evicted by this session, over every rebuild."""
        return self.context.eviction_count

    def pinned_tokens(self) -> int:
        return self.context.pinned_len

    def stream_totals(self) -> tuple[int, int]:
        """(tokens seen, evictions) over this session. Safe from another thread (the gauge)."""
        return self.context.stream_totals()

    @contextlib.contextmanager
    def supervised(
        self, cancel: threading.Event | None = None, progress: ProgressCallback | None = None
    ) -> Iterator[None]:
        """Within this block any work (a turn, summaries, /remember, /forget, starting the
        context) stops when `cancel` is set, and long work reports to `progress`."""
        saved = self._cancel, self.context.progress
        self._cancel, self.context.progress = cancel, progress
        try:
            with self.engine.cancellable(cancel):
                yield
        finally:
            self._cancel, self.context.progress = saved

    # ------------------------------------------------------------------ across the parts
    def prepare_turn(self, *, summarize: bool = True) -> None:
        raise NotImplementedError  # session

    def _stream(
        self, user_text: str, sampling: Sampling, cancel: threading.Event | None
    ) -> Iterator[TurnEvent]:
        raise NotImplementedError  # session

    def _reply(
        self, turn: Exchange, sampling: Sampling, cancel: threading.Event | None
    ) -> Iterator[TurnEvent]:
        raise NotImplementedError  # session

    def _rebuild(self, drop: set[int] | None = None) -> None:
        raise NotImplementedError  # lifecycle

    def _decode_pinned(self) -> None:
        raise NotImplementedError  # lifecycle

    def _replay_history(self) -> None:
        raise NotImplementedError  # lifecycle

    def _store_segment(self, seg: EvictedSegment, text: str, real: list[int]) -> None:
        raise NotImplementedError  # tiers
