"""ByteTokens: text as UTF-8 bytes, one token per byte.

For engines without a tokenizer of their own: the fake engine of the UI tests, and the remote
engine, whose server keeps its vocabulary to itself (the session's window and ledger only
need positions that round-trip to the same text).
"""

from __future__ import annotations

from collections.abc import Sequence


class ByteTokens:
    def tokenize(self, text: str, *, add_special: bool = False) -> list[int]:
        return list(text.encode("utf-8"))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return bytes(t for t in tokens if 0 <= t < 256).decode("utf-8", errors="replace")

    def token_piece(self, token: int) -> bytes:
        return bytes([token]) if 0 <= token < 256 else b""
