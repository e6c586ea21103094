"""Question sets about real repositories, and the pure rules that score against them.

A set (tests/data/qa_*.json) names an sdist from PyPI and holds questions, each with the
targets that answer it: a path, the enclosing symbol and the 1-based inclusive line range of
the answering lines. Sets written for answers also carry a reference answer and the 2-4
must-have terms a right answer contains. `tuning: false` marks a set never used to tune
anything: its figures are the honest ones.

The rules, used by `bench retrieval` and `bench qa` alike:
- a retrieved span *finds* a target when the paths are equal and the line ranges overlap;
- a retrieved chunk *names* a target (the older, lenient rule) when the path is equal and its
  symbol is the target's or inside it (`Console.size` for `Console`);
- an answer is *right* when it names a target's file (its path or file name) or symbol (the
  qualified name or its last part) and contains every must-have term, case-insensitively
  (`"a|b"` is either). Naming the place keeps a lucky guess of the terms from counting;
  the terms keep a quote of the file name from counting.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from localctx.errors import BadInput


@dataclass(frozen=True)
class Target:
    path: str
    symbol: str
    lines: tuple[int, int]  # 1-based, inclusive


@dataclass(frozen=True)
class Question:
    id: str
    q: str
    targets: tuple[Target, ...]
    paraphrased: bool = False
    answer: str = ""
    must: tuple[str, ...] = ()


@dataclass(frozen=True)
class QaSet:
    name: str  # the file stem without "qa_": "rich", "httpx"
    sdist: str
    version: str
    tuning: bool  # False: never tuned on
    questions: tuple[Question, ...]

    @property
    def answerable(self) -> bool:
        """Every question has must-have terms, so `right` can be judged."""
        return all(q.must for q in self.questions)


def load_qa(path: Path) -> QaSet:
    """Read a set; a file that is not one is a BadInput naming what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        questions = tuple(_question(i, raw) for i, raw in enumerate(data["questions"], 1))
        name = path.stem.removeprefix("qa_")
        return QaSet(
            name,
            str(data["sdist"]),
            str(data["version"]),
            bool(data.get("tuning", True)),
            questions,
        )
    except OSError as exc:
        raise BadInput(f"cannot read the QA set {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise BadInput(f"{path} is not a QA set ({type(exc).__name__}: {exc})") from None


def _question(number: int, raw: dict[str, object]) -> Question:
    targets = []
    for t in raw["targets"]:  # type: ignore[attr-defined]
        first, last = (int(n) for n in t["lines"])
        targets.append(Target(str(t["path"]), str(t.get("symbol", "")), (first, last)))
    return Question(
        id=str(raw.get("id") or f"q{number:02d}"),
        q=str(raw["q"]),
        targets=tuple(targets),
        paraphrased=bool(raw.get("paraphrased", False)),
        answer=str(raw.get("answer", "")),
        must=tuple(str(m) for m in raw.get("must", ())),  # type: ignore[attr-defined]
    )


def finds(path: str, start: int, end: int, question: Question) -> bool:
    """A retrieved span [start, end] of `path` overlaps one of the question's targets."""
    return any(
        t.path == path and start <= t.lines[1] and end >= t.lines[0] for t in question.targets
    )


def names(path: str, symbol: str, question: Question) -> bool:
    """The lenient rule: same path, and the chunk is the target's symbol or a part of it."""
    return any(
        t.path == path and (symbol == t.symbol or symbol.startswith(t.symbol + "."))
        for t in question.targets
    )


def first_rank(spans: list[tuple[str, int, int]], question: Question) -> int | None:
    """1-based rank of the first span that finds a target, or None."""
    for rank, (path, start, end) in enumerate(spans, 1):
        if finds(path, start, end, question):
            return rank
    return None


def is_right(answer: str, question: Question) -> bool:
    """Names a target's file or symbol, and contains every must-have term (see the module)."""
    if not question.must or not any(_names_target(answer, t) for t in question.targets):
        return False
    low = answer.lower()
    return all(any(alt.lower() in low for alt in term.split("|")) for term in question.must)


def _names_target(answer: str, target: Target) -> bool:
    """The path or file name, the qualified symbol, or its last part written as code.

    A bare last part counts only where it reads as an identifier: with `_` or inner capitals,
    8+ characters, or written as code (`send` in backticks, `send(`) — "send" in a sentence
    is not a reference to `Client.send`.
    """
    low = answer.lower()
    if target.path.lower() in low or Path(target.path).name.lower() in low:
        return True
    if not target.symbol:
        return False
    if target.symbol in answer:
        return True
    last = target.symbol.rsplit(".", 1)[-1]
    if not re.search(rf"(?<![A-Za-z0-9_]){re.escape(last)}(?![A-Za-z0-9_])", answer):
        return False
    identifier_like = "_" in last.strip("_") or last[1:] != last[1:].lower() or len(last) >= 8
    as_code = f"`{last}" in answer or f"{last}(" in answer or f".{last}" in answer
    return identifier_like or as_code


def fetch_sdist(name: str, version: str, cache: Path) -> Path:
    """Download (pip, no dependencies, source only) and unpack an sdist once; its root dir."""
    root = cache / f"{name}-{version}"
    if root.is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"{name}=={version}",
            "-d",
            str(cache),
        ],
        check=True,
    )
    archive = next(cache.glob(f"{name}-{version}.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    return root
