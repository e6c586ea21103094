"""Chunking: definitions by tree-sitter (Python, JavaScript), Markdown by headings, windows."""

from __future__ import annotations

import itertools

from localctx.ingest.chunker import chunk_file
from localctx.ingest.languages import language_of, parser_for
from localctx.ingest.tokens import estimate_tokens
from localctx.ingest.windows import chunk_lines, limit, markdown_spans

PYTHON = '''"""Module docstring."""

import os

LIMIT = 10


# Helper comment that belongs to the function below.
def top_level(a, b):
    """Add two numbers."""
    return a + b


class Greeter:
    """Says hello."""

    greeting = "hi"

    @staticmethod
    def hello(name):
        return f"hello {name}"

    def bye(self):
        return "bye"
'''

JAVASCRIPT = """import fs from "fs";

/** Reads a config file. */
export function readConfig(path) {
  return JSON.parse(fs.readFileSync(path, "utf8"));
}

export const double = (x) => x * 2;

class Cache {
  constructor() { this.items = new Map(); }
  get(key) { return this.items.get(key); }
}
"""

MARKDOWN = """Intro text before any heading.

# Install

Run the installer.

## From source

```sh
# not a heading: inside a fence
make install
```

# Usage

Call it.
"""


def _spans(chunks):
    return [(c.symbol, c.kind, c.start_line, c.end_line) for c in chunks]


def test_python_definitions_with_comments_and_decorators() -> None:
    chunks = chunk_file("pkg/mod.py", "python", PYTHON)
    by_symbol = {c.symbol: c for c in chunks}
    assert by_symbol["top_level"].kind == "definition"
    assert "# Helper comment that belongs to the function below.\ndef top_level" in (
        by_symbol["top_level"].text
    )
    assert by_symbol["Greeter"].text.count("def ") == 2  # a small class stays whole
    # A preamble this small joins the first definition instead of being a chunk of its own.
    assert (chunks[0].symbol, chunks[0].start_line) == ("top_level", 1)
    assert "import os" in chunks[0].text
    assert all(c.path == "pkg/mod.py" and c.language == "python" for c in chunks)
    constants = "".join(f"SETTING_{i} = {i}  # tuned by hand\n" for i in range(40))
    big = chunk_file("pkg/mod.py", "python", constants + PYTHON)
    assert (big[0].symbol, big[0].kind, big[0].start_line) == ("", "code", 1)
    assert next(c for c in big if c.symbol == "top_level").start_line > 40


def test_python_class_over_budget_splits_along_methods() -> None:
    chunks = chunk_file("pkg/mod.py", "python", PYTHON, budget=40)
    symbols = [c.symbol for c in chunks]
    assert "Greeter.hello" in symbols and "Greeter.bye" in symbols
    hello = next(c for c in chunks if c.symbol == "Greeter.hello")
    assert hello.text.lstrip().startswith("@staticmethod")  # the decorator travels with it
    assert any(c.symbol == "Greeter" and c.kind == "code" for c in chunks)  # class header
    assert all(estimate_tokens(c.text) <= limit(40) for c in chunks)


def test_javascript_functions_arrows_classes_and_jsdoc() -> None:
    chunks = chunk_file("src/config.js", "javascript", JAVASCRIPT)
    by_symbol = {c.symbol: c for c in chunks}
    assert {"readConfig", "double", "Cache"} <= by_symbol.keys()
    assert "/** Reads a config file. */\nexport function readConfig" in by_symbol["readConfig"].text
    assert by_symbol["readConfig"].start_line == 1  # with the import line before it
    small = chunk_file("src/config.js", "javascript", JAVASCRIPT, budget=30)
    assert {"Cache.constructor", "Cache.get"} <= {c.symbol for c in small}


def test_markdown_by_headings_ignoring_fenced_hashes() -> None:
    lines = MARKDOWN.splitlines(keepends=True)
    spans = [(s.symbol, s.start, s.end) for s in markdown_spans(lines)]
    assert spans == [("", 0, 2), ("Install", 2, 6), ("Install > From source", 6, 13),
                     ("Usage", 13, 16)]  # fmt: skip
    chunks = chunk_file("README.md", "markdown", MARKDOWN)
    assert [c.symbol for c in chunks] == ["", "Install", "Install > From source", "Usage"]
    assert all(c.kind == "section" for c in chunks)


def test_line_windows_overlap_and_fit_the_budget() -> None:
    lines = [f"line number {i} with some words in it\n" for i in range(300)]
    chunks = chunk_lines(lines, 100, "notes.txt", "text")
    assert len(chunks) > 3
    assert all(estimate_tokens(c.text) <= limit(100) for c in chunks)
    for a, b in itertools.pairwise(chunks):
        assert b.start_line <= a.end_line  # consecutive windows share lines
        assert b.start_line > a.start_line
    covered = {n for c in chunks for n in range(c.start_line, c.end_line + 1)}
    assert covered == set(range(1, 301))


def test_one_giant_line_is_cut_to_fit() -> None:
    chunks = chunk_lines(["word " * 5000 + "\n"], 100, "x.txt", "text")
    assert len(chunks) > 1
    assert all(c.start_line == c.end_line == 1 for c in chunks)
    assert all(estimate_tokens(c.text) <= limit(100) for c in chunks)
    assert "".join(c.text for c in chunks) == "word " * 5000 + "\n"


def test_unknown_language_and_parse_failure_fall_back_to_windows() -> None:
    chunks = chunk_file("data.toml", language_of("data.toml"), "[a]\nb = 1\n")
    assert [(c.kind, c.language) for c in chunks] == [("lines", "toml")]
    broken = chunk_file("x.py", "python", "def (:\n  ???\n")
    assert broken and broken[0].text.startswith("def (")


def test_languages_and_parsers() -> None:
    assert language_of("a/b/c.tsx") == "tsx"
    assert language_of("Dockerfile") == "dockerfile"
    assert language_of("x.unknown") == "text"
    assert parser_for("python") is not None
    assert parser_for("no-such-language") is None


def test_token_estimate_is_monotone_and_counts_unicode() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("a") == 1
    assert estimate_tokens("def f(x):\n    return x\n") < estimate_tokens("def f(x):\n" * 5)
    assert estimate_tokens("─" * 10) >= 10  # box drawing: ~1 token per character or more
