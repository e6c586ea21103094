"""What one turn of a session is, as data: its exchange, its result, the latest eviction, and
the pure decisions about a reply's text (where a base model's reply stops).

- `Exchange`: the newest user message and its reply (regenerate, edit, retract).
- `TurnResult`: what `Session.ask` returns (and `ask --json` prints).
- `EvictionReport`: the latest segment the window evicted; `summary` is filled in once written.
- `TurnMark`: everything a message's prefill changes, as it was before it (the cache's part
  is context.rollback.CacheMark).
- `TurnEvent`: what `Session.turn` yields, in order — `Recalled` (what was inserted before
  the question), `TokensGenerated` (the reply, piece by piece), `SegmentEvicted` and
  `SummaryWritten` (the memory tiers at work), and last `TurnFinished` (the figures). The
  TUI, `ask` and `serve` read these and nothing else of the session while a turn runs.

Must not: decode, render, or import llama_cpp / textual.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from localctx.context.rollback import CacheMark
from localctx.engine.base import ChatMessage, TokenEvent
from localctx.memory.retrieval import RecalledItem

# Where a base model starts the next turn of the plain transcript (it has no end-of-turn token).
PLAIN_STOPS = ("\nUser:", "\nSystem:")


@dataclass(frozen=True)
class Exchange:
    """The newest exchange: the user's message, its reply, and what ended the cache before."""

    user_id: int
    reply_id: int
    recalled_owner: int | None
    before: ChatMessage | None  # what ended the cache before the turn
    before_open: bool


@dataclass
class TurnResult:
    answer: str
    prompt_tokens: int
    completion_tokens: int
    prefill_tps: float
    decode_tps: float
    reused_tokens: int
    stop_reason: str
    recalled: list[RecalledItem] = field(default_factory=list)


@dataclass
class EvictionReport:
    """The latest segment the window evicted; `summary` is filled in once written."""

    segment_id: int | None
    n_tokens: int
    text: str
    summary: str | None = None
    runs: int = 1  # a scored policy's segment is scattered over several runs


@dataclass
class TurnMark:
    """A message's prefill taken back: the cache (CacheMark) and the session's own part."""

    cache: CacheMark
    messages: int
    last_recall: list[RecalledItem]
    recalled_seq: int


@dataclass(frozen=True)
class Recalled:
    """What recall inserted before the question (empty: nothing), and the code search's
    guess at the answering code."""

    items: tuple[RecalledItem, ...]
    expansion: str = ""


@dataclass(frozen=True)
class TokensGenerated:
    """One piece of the reply: the engine's token event (`text` may be empty mid-character)."""

    event: TokenEvent

    @property
    def text(self) -> str:
        return self.event.text


@dataclass(frozen=True)
class SegmentEvicted:
    """The window evicted a segment; the store keeps it verbatim."""

    report: EvictionReport


@dataclass(frozen=True)
class SummaryWritten:
    """A segment was summarized; `running` is the session's running summary after it."""

    segment_id: int
    summary: str
    running: str


@dataclass(frozen=True)
class TurnFinished:
    result: TurnResult


TurnEvent = Recalled | TokensGenerated | SegmentEvicted | SummaryWritten | TurnFinished


def token_view(events: Generator[TurnEvent, None, None]) -> Iterator[TokenEvent]:
    """The reply's token events of a turn (`Session.stream`, `regenerate`)."""
    try:
        for event in events:
            if isinstance(event, TokensGenerated):
                yield event.event
    finally:
        events.close()  # a caller that stops reading ends the turn now, not at collection


class MessageRows(Protocol):
    def messages(self, session_id: int) -> list[tuple[int, str, str]]: ...


def cut_index(stops: tuple[str, ...], pieces: list[str]) -> int:
    """How many generated pieces come before a stop begins (all of them if none does)."""
    text = "".join(pieces)
    found = [at for at in (text.find(stop) for stop in stops) if at >= 0]
    if not found:
        return len(pieces)
    at = min(found)
    length = 0
    for i, piece in enumerate(pieces):
        length += len(piece)
        if length > at:
            return i
    return len(pieces)


def fresh_name(prefix: str) -> str:
    """A collision-free session name: the time, for people, and random bits, for processes
    started in the same second."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def note_owner(core_id: int) -> int:
    """Owner id of the in-window note a /remember adds (negative: not a stored message)."""
    return -(10**6 + core_id)


def stored_last_turn(store: MessageRows | None, session_id: int) -> Exchange | None:
    """The newest exchange of a resumed session, read from the store."""
    if store is None:
        return None
    rows = store.messages(session_id)
    users = [i for i, row in enumerate(rows) if row[1] == "user"]
    if not users:
        return None
    at = users[-1]
    replies = [row[0] for row in rows[at + 1 :] if row[1] == "assistant"]
    before = rows[at - 1] if at else None
    previous: ChatMessage | None = (
        {"role": before[1], "content": before[2]} if before is not None else None
    )
    is_reply = previous is not None and previous["role"] == "assistant"
    return Exchange(rows[at][0], replies[0] if replies else -1, None, previous, is_reply)
