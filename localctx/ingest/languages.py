"""Which language a file is, and a tree-sitter parser for it when one is installed offline.

Parsers come from the per-grammar wheels on PyPI (`tree-sitter-python`, `-javascript`, ...),
which ship compiled grammars. tree-sitter-language-pack 1.x downloads its grammars from GitHub
on first use, which fails offline (and hangs where DNS is slow), so it is used only for
grammars it has already cached; a language with no parser falls back to line windows.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

import tree_sitter

EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".rb": "ruby",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "rst",
    ".txt": "text",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".cfg": "ini",
    ".ini": "ini",
    ".sh": "bash",
    ".bash": "bash",
    ".html": "html",
    ".css": "css",
    ".sql": "sql",
}
NAMES: dict[str, str] = {"dockerfile": "dockerfile", "makefile": "make", "license": "text"}

# language -> (module, function returning the grammar pointer)
_GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "ruby": ("tree_sitter_ruby", "language"),
}


def language_of(relpath: str) -> str:
    name = relpath.rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    if dot > 0 and name[dot:] in EXTENSIONS:
        return EXTENSIONS[name[dot:]]
    return NAMES.get(name, "text")


@cache
def parser_for(language: str) -> tree_sitter.Parser | None:
    """A cached parser, or None when no grammar for `language` is installed."""
    grammar = _GRAMMARS.get(language)
    if grammar is not None:
        try:
            module: Any = importlib.import_module(grammar[0])
            return tree_sitter.Parser(tree_sitter.Language(getattr(module, grammar[1])()))
        except (ImportError, AttributeError, ValueError):
            pass
    return _from_language_pack(language)


def _from_language_pack(language: str) -> tree_sitter.Parser | None:
    try:
        import tree_sitter_language_pack as pack

        if language not in pack.downloaded_languages():  # never trigger a download here
            return None
        parser: tree_sitter.Parser = pack.get_parser(language)  # the pack is untyped here
        return parser
    except Exception:  # any failure of an optional source means: no parser
        return None
