"""The repo digest: a compact map of a repository for the pinned region of a chat.

Like Aider's repo map, it lists the layout and the definitions that matter most, within a token
budget (default 1,500). A definition matters as much as the number of other files that use its
name (a name defined in many places counts less; dunders and very short names not at all), so
`Console` ranks above a private helper. The text depends only on what is indexed, ordered by
rank then path then name, so an unchanged repository yields byte-identical text and its KV
snapshot key (`digest_key`) stays the same. `rank_symbols` and `render_digest` are pure.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from localctx.ingest.tokens import TokenCounter, estimate_tokens
from localctx.memory.archival import ArchivalStore

DIGEST_TOKENS = 1500
LAYOUT_SHARE = 0.25  # at most this share of the budget goes to the directory layout
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class RankedSymbol:
    path: str
    symbol: str
    line: int
    score: float


def digest_key(digest: str) -> str:
    """A stable key for the digest text (and so for a KV snapshot of it)."""
    return hashlib.blake2b(digest.encode("utf-8"), digest_size=16).hexdigest()


def rank_symbols(
    definitions: Iterable[tuple[str, str, int]], file_idents: Iterable[tuple[str, set[str]]]
) -> list[RankedSymbol]:
    """Definitions ranked by how many other files use their name, best first."""
    defs = [d for d in definitions if _worth_ranking(d[1].rsplit(".", 1)[-1])]
    defined_in: dict[str, set[str]] = defaultdict(set)
    for path, symbol, _ in defs:
        defined_in[symbol.rsplit(".", 1)[-1]].add(path)
    users: Counter[str] = Counter()  # files using a name, not counting files defining it
    for path, idents in file_idents:
        for name in idents & defined_in.keys():
            if path not in defined_in[name]:
                users[name] += 1
    ranked: list[RankedSymbol] = []
    for path, symbol, line in defs:
        name = symbol.rsplit(".", 1)[-1]
        others = users[name]
        depth_penalty = 1 + 2 * symbol.count(".")  # method names are generic (write, update)
        score = others / len(defined_in[name]) / depth_penalty
        ranked.append(RankedSymbol(path, symbol, line, score))
    ranked.sort(key=lambda r: (-r.score, r.path, r.line, r.symbol))
    return ranked


def _worth_ranking(name: str) -> bool:
    return len(name) > 2 and not (name.startswith("__") and name.endswith("__"))


def render_digest(
    header: str,
    files: list[tuple[str, str]],
    ranked: list[RankedSymbol],
    budget: int,
    count: TokenCounter = estimate_tokens,
) -> str:
    """Header + layout + the most symbols that fit `budget` (binary search on how many)."""
    layout = _layout(files, int(budget * LAYOUT_SHARE), count)
    lo, hi = 0, min(len(ranked), budget)  # each symbol costs at least one token
    best = _symbols_text(header, layout, [])
    while lo <= hi:
        mid = (lo + hi) // 2
        text = _symbols_text(header, layout, ranked[:mid])
        if count(text) <= budget:
            best, lo = text, mid + 1
        else:
            hi = mid - 1
    return best


def _layout(files: list[tuple[str, str]], budget: int, count: TokenCounter) -> str:
    """Directories with their file counts, two levels deep, trimmed to `budget`."""
    dirs: Counter[str] = Counter()
    for path, _ in files:
        parts = path.split("/")[:-1]
        dirs["/".join(parts[:2]) + "/" if parts else "./"] += 1
    lines = [f"  {d} ({n} file{'s' if n != 1 else ''})" for d, n in sorted(dirs.items())]
    while lines and count("\n".join(lines)) > budget:
        lines.pop()
    return "\n".join(lines)


def _symbols_text(header: str, layout: str, chosen: list[RankedSymbol]) -> str:
    by_file: dict[str, list[RankedSymbol]] = defaultdict(list)
    for sym in chosen:
        by_file[sym.path].append(sym)
    body = [
        f"{path}: " + ", ".join(s.symbol for s in syms) for path, syms in sorted(by_file.items())
    ]
    parts = [header, "Layout:", layout] if layout else [header]
    if body:
        parts += ["Key definitions (most used first):", *body]
    return "\n".join(parts) + "\n"


def build_digest(
    store: ArchivalStore, repo: str, budget: int = DIGEST_TOKENS, count: TokenCounter | None = None
) -> str:
    """Read the index for `repo` and render its digest (streams the per-file identifiers)."""
    files = list(store.paths(repo))
    languages = Counter(lang for _, lang in files)
    langs = ", ".join(f"{lang} {n}" for lang, n in sorted(languages.items(), key=lambda x: -x[1]))
    name = repo.rstrip("/").rsplit("/", 1)[-1]
    header = f"Repository {name}: {len(files)} files" + (f" ({langs})." if langs else ".")
    used = ((path, set(idents.split())) for path, idents in store.file_identifiers(repo))
    ranked = rank_symbols(store.definitions(repo), used)
    return render_digest(header, files, ranked, budget, count or estimate_tokens)


def identifiers(text: str) -> str:
    """The distinct identifiers in `text`, sorted and space-separated (stored per file)."""
    return " ".join(sorted(identifier_set(text)))


def identifier_set(text: str) -> set[str]:
    return set(_IDENT.findall(text))
