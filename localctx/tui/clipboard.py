"""Copying out of the chat: which text (a reply, one of its code blocks), and where it goes.

Textual copies through the terminal (an OSC 52 escape), which many terminals honour and some
ignore without telling anyone (macOS Terminal; tmux without `set-clipboard on`). So every copy
is also written to `<home>/clipboard.txt`, and the notice names that file: the text is never
only in a place that might not exist. `code_blocks` is pure: it reads fences with markdown-it,
the parser Textual's Markdown widget uses, so it finds exactly the blocks the reader sees.
"""

from __future__ import annotations

from pathlib import Path

from markdown_it import MarkdownIt

from localctx import paths


def code_blocks(markdown: str) -> list[str]:
    """The fenced and indented code blocks of a reply, in order, without their fences."""
    tokens = MarkdownIt("commonmark").parse(markdown)
    return [t.content for t in tokens if t.type in ("fence", "code_block") and t.content.strip()]


def clipboard_file() -> Path:
    return paths.home() / "clipboard.txt"


def write_fallback(text: str) -> Path:
    path = clipboard_file()
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def describe_copy(what: str, text: str, path: Path) -> str:
    lines = text.count("\n") + (not text.endswith("\n"))
    plural = "s" if lines != 1 else ""
    return (
        f"copied {what} ({len(text):,} characters, {lines:,} line{plural}) to the clipboard; "
        f"also written to {path} (for terminals that ignore clipboard escapes)"
    )
