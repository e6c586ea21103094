"""Match the history a client resends against what its session already holds (pure).

OpenAI-style clients send the whole conversation every turn. The session already decoded what
it stored, so only the part after the stored messages is new: turn 40 of a conversation costs
its own tokens, not the 39 turns before it (re-prefilling a 1,000-token history costs 4-8 s on
2 cores). When the client's history differs from the stored one (an edited message, a
regenerated reply, a new conversation under the same session name), the session is rewound to
where they part and the rest is decoded from there.

Messages compare by role and by content with outer whitespace stripped: the session stores
replies stripped, and clients trim or keep a trailing newline as they like.

The rewind point never leaves a user message last: a user message that a reply followed was
decoded with the template's generation prompt after it, so a rewind there would put the next
message after a dangling "assistant" header. Backing up over it costs one message's decode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from localctx.serve.protocol import Message


@dataclass(frozen=True)
class HistoryPlan:
    keep: int  # stored messages that stay
    new: tuple[Message, ...]  # to decode after them; the last one is answered
    stored: int  # messages the session held
    diverged_at: int | None  # first index where the client's history differs; None: it extends

    @property
    def rewinds(self) -> bool:
        return self.keep < self.stored


def same(a: Message, b: Message) -> bool:
    return a.role == b.role and a.content.strip() == b.content.strip()


def plan_history(stored: Sequence[Message], incoming: Sequence[Message]) -> HistoryPlan:
    """What to keep of `stored` and what to decode of `incoming` (whose last is the user's)."""
    common = 0
    for old, new in zip(stored, incoming, strict=False):
        if not same(old, new):
            break
        common += 1
    if common == len(stored) and len(incoming) > len(stored):
        return HistoryPlan(common, tuple(incoming[common:]), len(stored), None)
    keep = min(common, len(incoming) - 1)  # the last incoming message is always decoded anew
    while keep > 0 and stored[keep - 1].role == "user":
        keep -= 1
    return HistoryPlan(keep, tuple(incoming[keep:]), len(stored), common)
