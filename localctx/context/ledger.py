"""The ownership record of the KV cache: the pinned region's length, the owner of each token after.

The session appends messages token by token; the sink window evicts from the front of the
window. To rebuild the context (a new running summary in the pinned region, a /forget, a
failed restore) the session must replay exactly the tokens still cached and attribute each to
its message, so a later eviction names the right messages. The ledger records owner ids per
appended token; the cached tail is always a suffix of that record: the window evicts
oldest-first, and a scored policy's scattered evictions leave the record (`forget_runs`).

Must not: decode or evict (context.cache and the KV policy do).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from localctx.engine.base import ChatMessage
from localctx.engine.positions import kept_indices
from localctx.kv.segment import EvictedSegment


@dataclass(frozen=True)
class LedgerMark:
    tokens: list[int]
    owners: list[int]
    streams: list[int]
    pending: list[tuple[int, int]]
    floor: int
    base: int
    last: ChatMessage | None
    last_open: bool
    owners_known: set[int]


@dataclass
class ContextLedger:
    pinned_len: int = 0
    tokens: list[int] = field(default_factory=list)  # appended after the pinned region
    owners: list[int] = field(default_factory=list)  # message id per token (<0: recalled)
    # The policy's stream index per token (ascending): the window counts from the first
    # pinned token, so the first token after the pinned region is `pinned_len`.
    streams: list[int] = field(default_factory=list)
    kinds: dict[int, str] = field(default_factory=dict)
    last: ChatMessage | None = None  # the last message appended (for template increments)
    last_open: bool = False  # `last` is a generated reply, its end marker not decoded
    keep: int = 1 << 18  # trim the record beyond this many tokens (the cache holds fewer)
    base: int = 0  # tokens trimmed from the front of the record
    # A scored policy evicts cells from the middle: their entries leave the record
    # (`forget_runs`), so the cached tokens stay its suffix; no stream index below `floor`
    # is handed out again (as in the window). Spans evicted before their tokens were
    # recorded (a message evicted while it was decoded) wait in `pending`.
    floor: int = 0
    pending: list[tuple[int, int]] = field(default_factory=list)

    def add(self, tokens: list[int], owner: int, kind: str = "message") -> None:
        start = max(self.streams[-1] + 1 if self.streams else self.pinned_len, self.floor)
        self.tokens.extend(tokens)
        self.owners.extend([owner] * len(tokens))
        self.streams.extend(range(start, start + len(tokens)))
        self.kinds.setdefault(owner, kind)
        if self.pending:
            spans, self.pending = self.pending, []
            self.forget_runs(spans)
        if len(self.tokens) > 2 * self.keep:
            cut = len(self.tokens) - self.keep
            del self.tokens[:cut], self.owners[:cut], self.streams[:cut]
            self.base += cut

    def forget_runs(self, spans: Sequence[tuple[int, int]]) -> None:
        """A scored policy evicted these stream spans [start, end): drop their entries (the
        memory tier holds them now); spans past the record's end wait for their tokens."""
        end = self.streams[-1] + 1 if self.streams else self.pinned_len
        gone: list[tuple[int, int]] = []
        for a, b in spans:
            if b > end:
                self.pending.append((max(a, end), b))
            if a < end:
                gone.append((a, min(b, end)))
        if not gone:
            return
        spans = [(bisect_left(self.streams, a), bisect_left(self.streams, b)) for a, b in gone]
        self.floor = max(self.floor, *(b for _, b in gone))
        keep = kept_indices(len(self.streams), spans)
        self.tokens = [self.tokens[i] for i in keep]
        self.owners = [self.owners[i] for i in keep]
        self.streams = [self.streams[i] for i in keep]

    def mark(self) -> LedgerMark:
        """The record now, to `rewind` to when what is appended next is taken back (flat
        copies: a scored eviction may take entries from the middle meanwhile)."""
        return LedgerMark(
            list(self.tokens), list(self.owners), list(self.streams), list(self.pending),
            self.floor, self.base, self.last, self.last_open, set(self.kinds),
        )  # fmt: skip

    def rewind(self, mark: LedgerMark) -> None:
        self.tokens, self.owners = list(mark.tokens), list(mark.owners)
        self.streams, self.pending = list(mark.streams), list(mark.pending)
        self.floor, self.base = mark.floor, mark.base
        for owner in set(self.kinds) - mark.owners_known:
            del self.kinds[owner]
        self.last, self.last_open = mark.last, mark.last_open

    def drop_tail(self, n: int, last: ChatMessage | None, last_open: bool) -> None:
        """Forget the newest `n` tokens (a retracted turn); `last` is what now ends the cache."""
        if n > 0:
            del self.tokens[-n:], self.owners[-n:], self.streams[-n:]
        self.last, self.last_open = last, last_open

    def owners_between(self, stream_start: int, stream_end: int) -> list[int] | None:
        """Owners of the policy's stream indices [start, end); None unless all are recorded."""
        i0 = bisect_left(self.streams, stream_start)
        i1 = bisect_left(self.streams, stream_end)
        if i0 >= i1 or i1 - i0 != stream_end - stream_start:
            return None
        return self.owners[i0:i1]

    def tail(self, cache_tokens: list[int]) -> list[tuple[int, str, list[int]]]:
        """The cached tokens after the pinned region, grouped by owner: (owner, kind, tokens)."""
        held = cache_tokens[self.pinned_len :]
        if not held:
            return []
        n = len(held)
        # The record lost track (should not happen): one anonymous run still keeps the text.
        tracked = len(self.tokens) >= n and self.tokens[-n:] == held
        owners = self.owners[-n:] if tracked else [0] * n
        runs: list[tuple[int, str, list[int]]] = []
        for tok, owner in zip(held, owners, strict=True):
            if runs and runs[-1][0] == owner:
                runs[-1][2].append(tok)
            else:
                runs.append((owner, self.kinds.get(owner, "message"), [tok]))
        return runs

    def conversation_part(
        self, seg: EvictedSegment, detokenize: Callable[[list[int]], str]
    ) -> tuple[str, list[int]] | None:
        """What of an evicted segment the conversation said, and the stored message ids in it;
        None when it held only recalled snippets (copies of stored text: storing them again
        would crowd every later search)."""
        per_token: list[int] = []
        for a, b in seg.stream_runs():
            got = self.owners_between(a, b)
            if not got:  # a run the record no longer holds: fall back to the message ids
                per_token = []
                break
            per_token.extend(got)
        owners = list(dict.fromkeys(per_token if per_token else seg.message_ids))
        recalled = {o for o in owners if self.kinds.get(o) == "recalled"}
        if recalled == set(owners):
            return None
        text = seg.text
        if recalled and per_token and len(per_token) == seg.n_tokens:
            text = detokenize(
                [t for t, o in zip(seg.tokens, per_token, strict=True) if o not in recalled]
            )
        return text, [o for o in owners if o > 0]

    def owners_in_cache(self, cells_used: int) -> set[int]:
        n = cells_used - self.pinned_len
        return set(self.owners[-n:]) if n > 0 else set()

    def snapshot_meta(self, session: str, cells_used: int) -> dict[str, Any]:
        n = max(0, cells_used - self.pinned_len)
        owners = self.owners[-n:] if n else []
        runs: list[list[Any]] = []
        for owner in owners:
            if runs and runs[-1][0] == owner:
                runs[-1][2] += 1
            else:
                runs.append([owner, self.kinds.get(owner, "message"), 1])
        return {
            "kind": "session",
            "session": session,
            "pinned_len": self.pinned_len,
            "runs": runs,
            "last": self.last,
            "last_open": self.last_open,
            "message_ids": sorted({o for o in owners if o > 0}),
        }

    @classmethod
    def from_snapshot(
        cls, meta: dict[str, Any], tokens: list[int], pinned_len: int
    ) -> ContextLedger:
        ledger = cls(pinned_len=pinned_len)
        tail = tokens[pinned_len:]
        runs = meta.get("runs") or []
        if sum(int(r[2]) for r in runs) == len(tail):
            at = 0
            for owner, kind, count in runs:
                ledger.add(tail[at : at + int(count)], int(owner), str(kind))
                at += int(count)
        elif tail:
            ledger.add(tail, 0)
        last = meta.get("last")
        if isinstance(last, dict) and {"role", "content"} <= last.keys():
            ledger.last = {"role": str(last["role"]), "content": str(last["content"])}
            ledger.last_open = bool(meta.get("last_open", False))
        return ledger
