"""One question answered through a session: what `localctx ask` runs and `bench qa` measures.

Both go through this function so the benchmark measures the path users run: open the session
(attaching and, on first use, ingesting the repository), answer with recall, report the
answer (`on_answered`: `ask --json` prints its object then), summarize at most
ASK_SUMMARY_BOUND of this session's evicted segments (never while the answer streams; the rest
wait for the session's next start), close (snapshot for a named session). Without a name the
session is ephemeral: it answers from the repository and core memory and leaves no
conversation behind.

It reads the turn as the session's typed events (Session.turn), as the TUI and `serve` do.

Must not: print or parse arguments (the CLI does), or import llama_cpp / textual.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from localctx.engine.base import Engine, Sampling
from localctx.gauge import GaugeReading, GaugeSampler
from localctx.session import Session
from localctx.turns import Recalled, TokensGenerated, TurnFinished, TurnResult

ASK_SUMMARY_BOUND = 4  # segments `ask` summarizes before exiting; the rest wait for the next run
# memory.expand, on: span recall@5 on the werkzeug set 0.33 -> 0.42 with the 0.5B's guess, 0.50
# with the 1.5B's (bench retrieval, fused ranking); costs ~3 s of first token on 2 cores.
EXPAND_DEFAULT = True


@dataclass
class Answered:
    result: TurnResult
    session: str
    seconds: float  # the whole call: open, answer, summaries, close
    first_token_seconds: float | None  # user message to first answer text (None: no text)
    notices: list[str] = field(default_factory=list)
    gauge: GaugeReading | None = None  # the final reading, when asked for
    expansion: str = ""  # the model's guess at the answering code, when `expand` was on


def answer_once(
    engine: Engine,
    question: str,
    sampling: Sampling,
    *,
    repo: str | Path | None = None,
    session_name: str | None = None,
    window: int | None = None,
    recall_all: bool = False,
    expand: bool = EXPAND_DEFAULT,
    dense: str = "auto",
    on_text: Callable[[str], None] | None = None,
    summarize: int | None = ASK_SUMMARY_BOUND,
    gauge: bool = False,
    cancel: threading.Event | None = None,
    on_answered: Callable[[Answered], None] | None = None,
    evict: str = "window",
    recent: int | None = None,
) -> Answered:
    """Answer `question` as `localctx ask` does; `summarize` bounds the summaries written.

    `on_answered` gets the answer as soon as it is complete, before the summaries and the
    snapshot (which can take seconds each); the returned Answered adds their notices.
    Setting `cancel` stops it: a prefill raises Cancelled with the question taken back, a
    reply ends where it is, and no summary is written after it.
    """
    t0 = time.perf_counter()
    session = Session.open(
        engine,
        name=session_name,
        window=window,
        repo=repo,
        recall_all=recall_all,
        ephemeral=session_name is None,
        expand=expand,
        dense=dense,
        evict=evict,
        recent=recent,
    )
    notices = list(getattr(session.repo, "notices", None) or [])
    try:
        with session.supervised(cancel):
            started = time.perf_counter()
            first: float | None = None
            expansion = ""
            for event in session.turn(question, sampling):
                if isinstance(event, Recalled):
                    expansion = event.expansion
                elif isinstance(event, TokensGenerated) and event.text:
                    first = first if first is not None else time.perf_counter()
                    if on_text is not None:
                        on_text(event.text)
                elif isinstance(event, TurnFinished):
                    result = event.result
            reading = GaugeSampler(engine, session.policy).sample() if gauge else None
            ttft = first - started if first is not None else None
            done = Answered(
                result, session.name or "", time.perf_counter() - t0, ttft,
                notices + session.notices, reading, expansion,
            )  # fmt: skip
            if on_answered is not None:
                on_answered(done)
            if summarize and not (cancel is not None and cancel.is_set()):
                session.summarize_pending(summarize)
    finally:
        session.close()
    done.notices = notices + session.notices
    done.seconds = time.perf_counter() - t0
    return done
