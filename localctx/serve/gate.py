"""What of a reply may be streamed yet: nothing a stop sequence or the final strip takes back.

The session stores a reply stripped and, when a stop sequence appears, cut before the *token
piece* in which the stop begins (localctx.session). A streamed delta cannot be unsent, so the
gate holds back (1) every piece from the first one where a stop could be starting, until the
text rules it out, and (2) leading and trailing whitespace. Then the concatenated deltas equal
the stored reply exactly, which is also what a non-streamed request returns — and what the
client sends back next turn, so the history matches without a rewind.

Pure; one instance per reply.
"""

from __future__ import annotations

from collections.abc import Sequence


class TextGate:
    def __init__(self, stops: Sequence[str] = ()) -> None:
        self.stops = tuple(s for s in stops if s)
        self._text = ""
        self._ends: list[int] = []  # end offset of each piece in _text
        self.sent = ""
        self.stopped = False  # a whole stop sequence appeared

    def push(self, piece: str) -> str:
        """Add a generated piece; return the text that is now safe to send (maybe "")."""
        self._text += piece
        self._ends.append(len(self._text))
        safe = self._text[: self._safe_end()].strip()
        if not safe.startswith(self.sent) or len(safe) <= len(self.sent):
            return ""
        delta, self.sent = safe[len(self.sent) :], safe
        return delta

    def finish(self, final: str) -> str:
        """The rest of the stored reply `final`, once generation ended."""
        if final.startswith(self.sent):
            rest, self.sent = final[len(self.sent) :], final
            return rest
        return ""  # cannot happen with the session's cut rule; never resend what was sent

    def _safe_end(self) -> int:
        """End of the last whole piece before the earliest place a stop could begin."""
        text = self._text
        earliest = len(text)
        for stop in self.stops:
            found = text.find(stop)
            if found >= 0:
                self.stopped = True
                earliest = min(earliest, found)
            for k in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:k]):
                    earliest = min(earliest, len(text) - k)
                    break
        if earliest >= len(text):
            return len(text)
        start = 0
        for end in self._ends:
            if end > earliest:
                return start
            start = end
        return start
