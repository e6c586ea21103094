"""Chunks of text that has no syntax tree: Markdown by headings, everything else by windows.

A window is a run of whole lines whose estimated tokens fit the budget; consecutive windows
share ~15% of their lines so a sentence or statement cut at a boundary is whole in one of them.
A single line over the budget (a long literal) is cut into character pieces with the same line
span, so every chunk fits. Pure functions over a list of lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from localctx.ingest.tokens import SAFETY, estimate_tokens

DEFAULT_CHUNK_TOKENS = 400  # ~5 recalled chunks fit beside a 2K-token prompt in an 8K context
OVERLAP = 0.15


@dataclass(frozen=True)
class Chunk:
    path: str
    language: str
    start_line: int  # 1-based, inclusive
    end_line: int  # inclusive
    symbol: str  # "Console.print", "Install > From source" (Markdown), "" for plain text
    kind: str  # "definition" | "code" (between definitions) | "section" | "lines"
    text: str


@dataclass(frozen=True)
class Span:
    """Lines [start, end) (0-based) of one file, to be emitted as one or more chunks."""

    start: int
    end: int
    symbol: str
    kind: str


def limit(budget: int) -> int:
    return max(16, int(budget * SAFETY))


def windows(lines: list[str], span: Span, budget: int, path: str, language: str) -> list[Chunk]:
    """Split `span` into overlapping windows of whole lines that fit `budget` (estimated)."""
    cap = limit(budget)
    text = "".join(lines[span.start : span.end])
    if not text.strip():
        return []
    if estimate_tokens(text) <= cap:
        return [_chunk(lines, span.start, span.end, span, path, language)]
    # Per-line costs are the span's estimate spread by characters (one regex pass, not one
    # per line); a window that still comes out over the cap is split again on its own.
    total_chars = max(1, len(text))
    per_char = estimate_tokens(text) / total_chars
    costs = [len(line) * per_char for line in lines[span.start : span.end]]
    out: list[Chunk] = []
    i = span.start
    while i < span.end:
        total, j = 0.0, i
        while j < span.end and (j == i or total + costs[j - span.start] <= cap):
            total += costs[j - span.start]
            j += 1
        piece = "".join(lines[i:j])
        if j - i == 1 and estimate_tokens(piece) > cap:  # one line alone is over the budget
            out.extend(_split_line(lines[i], i, cap, span, path, language))
        elif piece.strip():
            if estimate_tokens(piece) <= cap or j - i == 1:
                out.append(_chunk(lines, i, j, span, path, language))
            else:  # denser than the span's average: split this window by its own density
                out.extend(windows(lines, Span(i, j, span.symbol, span.kind), budget, path,
                                   language))  # fmt: skip
        if j >= span.end:
            break
        back = int((j - i) * OVERLAP)
        i = max(i + 1, j - back)
    return out


def _chunk(lines: list[str], i: int, j: int, span: Span, path: str, language: str) -> Chunk:
    return Chunk(path, language, i + 1, j, span.symbol, span.kind, "".join(lines[i:j]))


def _split_line(line: str, i: int, cap: int, span: Span, path: str, language: str) -> list[Chunk]:
    step = max(32, int(len(line) * cap / max(1, estimate_tokens(line))))
    return [
        Chunk(path, language, i + 1, i + 1, span.symbol, span.kind, line[k : k + step])
        for k in range(0, len(line), step)
    ]


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_spans(lines: list[str]) -> list[Span]:
    """One span per heading section (fenced code is not scanned for headings)."""
    spans: list[Span] = []
    trail: list[tuple[int, str]] = []  # (level, title) of the enclosing headings
    start, symbol, fenced = 0, "", False
    for n, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match is None:
            continue
        if n > start:
            spans.append(Span(start, n, symbol, "section"))
        level = len(match.group(1))
        trail = [(lv, t) for lv, t in trail if lv < level] + [(level, match.group(2))]
        symbol = " > ".join(t for _, t in trail)
        start = n
    if len(lines) > start:
        spans.append(Span(start, len(lines), symbol, "section"))
    return spans


def chunk_markdown(lines: list[str], budget: int, path: str) -> list[Chunk]:
    out: list[Chunk] = []
    for span in markdown_spans(lines):
        out.extend(windows(lines, span, budget, path, "markdown"))
    return out


def chunk_lines(lines: list[str], budget: int, path: str, language: str) -> list[Chunk]:
    return windows(lines, Span(0, len(lines), "", "lines"), budget, path, language)
