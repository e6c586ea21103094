"""The prose the benchmarks read by default, shipped in the repository (never a folder outside it).

`tests/data/devils-dictionary-excerpt.txt`: the first ~200 KB of Ambrose Bierce, *The Devil's
Dictionary* (1911, public domain), ~48K tokens with SmolLM2's tokenizer — enough for 3,000-token
perplexity runs, 16K-token prompts and needle filler (repeated past its end).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PROSE = REPO_ROOT / "tests" / "data" / "devils-dictionary-excerpt.txt"


def default_prose() -> Path | None:
    """The shipped excerpt, when this is a checkout of the repository (a wheel has none)."""
    return DEFAULT_PROSE if DEFAULT_PROSE.is_file() else None
