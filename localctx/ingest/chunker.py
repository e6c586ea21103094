"""Code-aware chunking: one chunk per definition, found with tree-sitter, within a token budget.

A definition (function, class, method, struct, impl, ...) that fits the budget is one chunk
named by its qualified symbol (`Console.print`), with the comment lines right above it (doc
comments, decorators). One that does not fit is split along its nested definitions (the lines
of a class outside its methods become `code` chunks named for the class); one with none is cut
into overlapping windows that keep its name. Code between definitions (imports, constants) is
cut into windows with an empty symbol. Files without an installed grammar, or that fail to
parse, fall back to windows (windows.py), so every file is indexed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tree_sitter

from localctx.ingest.languages import parser_for
from localctx.ingest.tokens import estimate_tokens
from localctx.ingest.windows import (
    DEFAULT_CHUNK_TOKENS,
    Chunk,
    Span,
    chunk_lines,
    chunk_markdown,
    limit,
    windows,
)

_DEFINITIONS: dict[str, frozenset[str]] = {
    "python": frozenset({"function_definition", "class_definition"}),
    "javascript": frozenset(
        {
            "function_declaration",
            "generator_function_declaration",
            "class_declaration",
            "method_definition",
        }
    ),
    "go": frozenset({"function_declaration", "method_declaration", "type_declaration"}),
    "rust": frozenset(
        {
            "function_item",
            "impl_item",
            "struct_item",
            "enum_item",
            "trait_item",
            "mod_item",
            "macro_definition",
            "function_signature_item",
        }
    ),
    "java": frozenset(
        {
            "class_declaration",
            "interface_declaration",
            "enum_declaration",
            "record_declaration",
            "method_declaration",
            "constructor_declaration",
        }
    ),
    "c": frozenset({"function_definition", "struct_specifier", "enum_specifier"}),
    "ruby": frozenset({"method", "singleton_method", "class", "module"}),
}
_DEFINITIONS["typescript"] = _DEFINITIONS["javascript"] | {
    "interface_declaration", "type_alias_declaration", "enum_declaration",
    "abstract_class_declaration", "internal_module",
}  # fmt: skip
_DEFINITIONS["tsx"] = _DEFINITIONS["typescript"]
_DEFINITIONS["cpp"] = _DEFINITIONS["c"] | {"class_specifier", "namespace_definition"}

# Nodes that wrap one definition and belong to its chunk.
_WRAPPERS = frozenset({"decorated_definition", "export_statement", "template_declaration"})
_VALUE_DEFS = frozenset(
    {"arrow_function", "function_expression", "function", "class", "generator_function"}
)
_COMMENT_PREFIXES = ("#", "//", "/*", "*", "--", "@")
SMALL_GAP_TOKENS = 48  # code between definitions this small joins the definition after it


@dataclass
class _Def:
    start: int  # 0-based rows, end exclusive
    end: int
    symbol: str
    children: list[_Def] = field(default_factory=list)


def chunk_file(
    path: str, language: str, text: str, budget: int = DEFAULT_CHUNK_TOKENS
) -> list[Chunk]:
    """All chunks of one file, in line order; each fits `budget` estimated tokens."""
    lines = text.splitlines(keepends=True)
    if language == "markdown":
        return chunk_markdown(lines, budget, path)
    parser = parser_for(language) if language in _DEFINITIONS else None
    if parser is None:
        return chunk_lines(lines, budget, path, language)
    tree = parser.parse(text.encode("utf-8", errors="replace"))
    defs = _find_defs(tree.root_node, "", _DEFINITIONS[language])
    if not defs:
        return chunk_lines(lines, budget, path, language)
    out: list[Chunk] = []
    _emit(lines, defs, Span(0, len(lines), "", "code"), budget, path, language, out)
    return out


def _find_defs(node: tree_sitter.Node, prefix: str, kinds: frozenset[str]) -> list[_Def]:
    found: list[_Def] = []
    for child in node.named_children:
        inner = _unwrap(child)
        name = _def_name(inner, kinds)
        if name is None:
            continue
        symbol = f"{prefix}.{name}" if prefix else name
        body = _body(inner)
        nested = _find_defs(body, symbol, kinds) if body is not None else []
        found.append(_Def(child.start_point[0], child.end_point[0] + 1, symbol, nested))
    return found


def _unwrap(node: tree_sitter.Node) -> tree_sitter.Node:
    while node.type in _WRAPPERS:
        inner = node.child_by_field_name("definition") or node.child_by_field_name("declaration")
        if inner is None:
            named = [c for c in node.named_children if c.type not in ("decorator", "comment")]
            inner = named[-1] if named else None
        if inner is None:
            return node
        node = inner
    return node


def _def_name(node: tree_sitter.Node, kinds: frozenset[str]) -> str | None:
    if node.type in ("lexical_declaration", "variable_declaration"):
        for decl in node.named_children:  # const f = () => ...
            value = decl.child_by_field_name("value")
            if value is not None and value.type in _VALUE_DEFS:
                return _text(decl.child_by_field_name("name"))
        return None
    if node.type not in kinds:
        return None
    if node.type == "type_declaration":  # Go: type T struct{...}
        spec = next((c for c in node.named_children if c.type == "type_spec"), None)
        return _text(spec.child_by_field_name("name")) if spec else None
    name = node.child_by_field_name("name") or node.child_by_field_name("type")
    if name is None:
        name = _declarator_name(node.child_by_field_name("declarator"))
    if name is None and node.type in ("struct_specifier", "enum_specifier"):
        return None  # an anonymous struct is part of a declaration, not a definition
    return _text(name) or None


def _declarator_name(node: tree_sitter.Node | None) -> tree_sitter.Node | None:
    """C/C++: the identifier inside pointer/function/reference declarators."""
    while node is not None:
        if node.type in ("identifier", "field_identifier", "qualified_identifier",
                         "destructor_name", "operator_name"):  # fmt: skip
            return node
        node = node.child_by_field_name("declarator") or next(
            (c for c in node.named_children if "declarator" in c.type or "identifier" in c.type),
            None,
        )
    return None


def _body(node: tree_sitter.Node) -> tree_sitter.Node | None:
    body = node.child_by_field_name("body")
    if body is None and node.type in ("lexical_declaration", "variable_declaration"):
        for decl in node.named_children:
            value = decl.child_by_field_name("value")
            if value is not None:
                return value.child_by_field_name("body")
    return body


def _text(node: tree_sitter.Node | None) -> str:
    if node is None or node.text is None:
        return ""
    return node.text.decode("utf-8", errors="replace").split("\n", 1)[0][:120]


def _emit(
    lines: list[str],
    defs: list[_Def],
    outer: Span,
    budget: int,
    path: str,
    language: str,
    out: list[Chunk],
) -> None:
    """Chunks for `outer`: each definition (split further if needed) and the code between."""
    cursor = outer.start
    for d in defs:
        start = _with_leading_comments(lines, max(d.start, cursor), cursor)
        end = min(d.end, outer.end)
        gap = "".join(lines[cursor:start])
        if (
            gap.strip()
            and estimate_tokens(gap) <= SMALL_GAP_TOKENS
            and _fits(gap + "".join(lines[start:end]), limit(budget))
        ):
            start = cursor  # a few imports alone would be a chunk that matches paths, not answers
        if start > cursor:
            out.extend(windows(lines, Span(cursor, start, outer.symbol, "code"), budget, path,
                               language))  # fmt: skip
        text = "".join(lines[start:end])
        if _fits(text, limit(budget)):
            out.append(Chunk(path, language, start + 1, end, d.symbol, "definition", text))
        elif d.children:
            _emit(lines, d.children, Span(start, end, d.symbol, "code"), budget, path, language,
                  out)  # fmt: skip
        else:
            out.extend(windows(lines, Span(start, end, d.symbol, "definition"), budget, path,
                               language))  # fmt: skip
        cursor = max(cursor, end)
    if cursor < outer.end:
        out.extend(windows(lines, Span(cursor, outer.end, outer.symbol, "code"), budget, path,
                           language))  # fmt: skip


def _fits(text: str, cap: int) -> bool:
    # Code runs at 2-6 characters per estimated token: a span 16x the cap in characters cannot
    # fit, and skipping the estimate of a whole 2,000-line class saves real time.
    return len(text) <= cap * 16 and estimate_tokens(text) <= cap


def _with_leading_comments(lines: list[str], start: int, floor: int) -> int:
    """Move `start` up over the comment block directly above a definition (no blank line)."""
    while start > floor and lines[start - 1].lstrip().startswith(_COMMENT_PREFIXES):
        start -= 1
    return start
