"""Walk a repository lazily: which files to index, each refusal counted by reason.

Ignore rules are git's, evaluated by `pathspec` (never hand-written matching): a `.gitignore`
in any directory applies below it with its patterns relative to that directory, deeper files
win, `!negation` re-includes, and a directory that is ignored is not entered (so, as in git, a
file under it cannot be re-included). `.git/info/exclude` sits below every `.gitignore`; a
`.localctxignore` in any directory sits above the `.gitignore` beside it; `--exclude` globs
sit above everything. The walk is a generator over one directory listing per level of the
current path, so memory stays bounded on a 100k-file tree; only the set of directory inodes
already entered (to refuse symlink loops) grows with the number of directories.
Reading and content checks are in reader.py; the decisions on names are in rules.py.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pathspec

from localctx.ingest.rules import Skip, is_secret, skip_dir_by_name, skip_file_by_name

IGNORE_FILES = (".gitignore", ".localctxignore")  # later wins: .localctxignore overrides
DEFAULT_MAX_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class WalkOptions:
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    include: tuple[str, ...] = ()  # gitignore-style globs; when given, only matches are indexed
    exclude: tuple[str, ...] = ()  # gitignore-style globs, above every ignore file
    allow_secrets: tuple[str, ...] = ()  # explicit opt-in for names in rules.SECRET_PATTERNS


@dataclass(frozen=True)
class SourceFile:
    """A file that passed every name and size rule; content rules come when it is read."""

    relpath: str  # POSIX path relative to the root (a symlink keeps its own name)
    path: str  # absolute path to open
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skipped:
    relpath: str
    reason: Skip


@dataclass(frozen=True)
class _Rules:
    base: str  # directory (relative, "" for the root) the patterns are relative to
    spec: pathspec.PathSpec[Any]


def _spec(lines: list[str]) -> pathspec.PathSpec[Any] | None:
    lines = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().splitlines()
    except OSError:
        return []


def _ignored(rules: tuple[_Rules, ...], relpath: str, is_dir: bool) -> bool:
    """git's precedence: the deepest rule set with a matching pattern decides."""
    for rule in reversed(rules):
        rel = relpath[len(rule.base) + 1 :] if rule.base else relpath
        result = rule.spec.check_file(rel + "/" if is_dir else rel)
        if result.include is not None:
            return bool(result.include)
    return False


def walk(root: Path, options: WalkOptions | None = None) -> Iterator[SourceFile | Skipped]:
    """Yield every candidate file under `root` (a resolved directory) or why it was skipped."""
    options = options or WalkOptions()
    root_real = os.path.realpath(root)
    base_rules: list[_Rules] = []
    exclude = _spec(list(options.exclude))
    include = _spec(list(options.include))
    info_exclude = _spec(_read_lines(os.path.join(root_real, ".git", "info", "exclude")))
    if info_exclude:
        base_rules.append(_Rules("", info_exclude))
    visited: set[tuple[int, int]] = set()
    top = os.stat(root_real)
    visited.add((top.st_dev, top.st_ino))
    yield from _walk_dir(root_real, "", tuple(base_rules), root_real, visited, options, exclude,
                         include)  # fmt: skip


def _walk_dir(
    dir_path: str,
    dir_rel: str,
    inherited: tuple[_Rules, ...],
    root_real: str,
    visited: set[tuple[int, int]],
    options: WalkOptions,
    exclude: pathspec.PathSpec[Any] | None,
    include: pathspec.PathSpec[Any] | None,
) -> Iterator[SourceFile | Skipped]:
    lines: list[str] = []
    for name in IGNORE_FILES:
        lines += _read_lines(os.path.join(dir_path, name))
    local = _spec(lines)
    rules = (*inherited, _Rules(dir_rel, local)) if local else inherited
    try:
        with os.scandir(dir_path) as it:
            entries = sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        yield Skipped(dir_rel, Skip.VANISHED)
        return
    except OSError:
        yield Skipped(dir_rel, Skip.UNREADABLE)
        return
    for entry in entries:
        rel = f"{dir_rel}/{entry.name}" if dir_rel else entry.name
        if not entry.name.isascii() and not _utf8(entry.name):
            yield Skipped(rel, Skip.BAD_NAME)
            continue
        try:
            is_link = entry.is_symlink()
            is_dir = entry.is_dir(follow_symlinks=True)
        except OSError as exc:
            yield Skipped(rel, _stat_failure(exc))
            continue
        reason = _name_rules(entry.name, rel, is_dir, rules, options, exclude)
        if reason is not None:
            yield Skipped(rel, reason)
            continue
        real = entry.path
        if is_link:
            try:
                real = os.path.realpath(entry.path)
            except OSError:  # a link that cannot be read (/proc/N/exe of a kernel thread)
                yield Skipped(rel, Skip.SYMLINK_BROKEN)
                continue
            if not (real == root_real or real.startswith(root_real + os.sep)):
                yield Skipped(rel, Skip.SYMLINK_OUTSIDE)
                continue
            if not os.path.exists(real):
                yield Skipped(rel, Skip.SYMLINK_BROKEN)
                continue
            if not is_dir and is_secret(os.path.basename(real), rel, options.allow_secrets):
                yield Skipped(rel, Skip.SECRET)
                continue
        try:
            st = os.stat(real)
        except FileNotFoundError:
            yield Skipped(rel, Skip.SYMLINK_BROKEN if is_link else Skip.VANISHED)
            continue
        except OSError as exc:
            yield Skipped(rel, _stat_failure(exc))
            continue
        if is_dir:
            key = (st.st_dev, st.st_ino)
            if key in visited:
                yield Skipped(rel, Skip.SYMLINK_LOOP)
                continue
            visited.add(key)
            yield from _walk_dir(real, rel, rules, root_real, visited, options, exclude, include)
            continue
        if not stat.S_ISREG(st.st_mode):
            yield Skipped(rel, Skip.NOT_REGULAR)
        elif include is not None and not include.match_file(rel):
            yield Skipped(rel, Skip.NOT_INCLUDED)
        elif st.st_size > options.max_file_bytes:
            yield Skipped(rel, Skip.TOO_LARGE)
        elif st.st_size == 0:
            yield Skipped(rel, Skip.EMPTY)
        else:
            yield SourceFile(rel, real, st.st_size, st.st_mtime_ns)


def _stat_failure(exc: OSError) -> Skip:
    """Why an entry could not be stat'ed: a link cycle (a -> b -> a) is a loop, not gone."""
    if exc.errno == errno.ELOOP:
        return Skip.SYMLINK_LOOP
    if isinstance(exc, FileNotFoundError):
        return Skip.VANISHED
    return Skip.UNREADABLE


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")  # os.scandir maps undecodable bytes to lone surrogates
    except UnicodeEncodeError:
        return False
    return True


def _name_rules(
    name: str,
    rel: str,
    is_dir: bool,
    rules: tuple[_Rules, ...],
    options: WalkOptions,
    exclude: pathspec.PathSpec[Any] | None,
) -> Skip | None:
    """Every decision that needs only the name, in precedence order."""
    if is_dir:
        by_name = skip_dir_by_name(name)
        if by_name is Skip.VCS:
            return by_name
    if exclude is not None and exclude.match_file(rel + "/" if is_dir else rel):
        return Skip.EXCLUDED
    if _ignored(rules, rel, is_dir):
        return Skip.IGNORED_DIR if is_dir else Skip.IGNORED
    if is_dir:
        return by_name
    if is_secret(name, rel, options.allow_secrets):
        return Skip.SECRET
    return skip_file_by_name(name)
