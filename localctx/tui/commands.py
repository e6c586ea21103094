"""Slash commands and keys: the tables users read in /help and F1, and a pure parser.

Parsing is separate from running so every rule (unknown name, missing argument, a number
that is not one) is unit-tested without an app; the app maps a parsed Command to a worker.
An unknown name is answered with the closest command (difflib), not only a prefix match.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandSpec:
    name: str
    usage: str
    summary: str
    arg: str = ""  # "" none, "text" required text, "int" a positive integer, "opt" optional


_KEPT = " (kept with the session)"
COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("ingest", "/ingest PATH", "index a repository into memory", "text"),
        CommandSpec("repo", "/repo PATH", "index and attach a repository", "text"),
        CommandSpec("model", "/model [NAME]", "switch model; alone: pick one (F5)", "opt"),
        CommandSpec("kv", "/kv TYPE", "reload with KV type f16, q8_0, q4_0…" + _KEPT, "text"),
        CommandSpec("window", "/window N", "the sink-window size in tokens" + _KEPT, "int"),
        CommandSpec(
            "set",
            "/set [max_tokens N | temperature T]",
            "reply length and sampling" + _KEPT + "; alone: show them",
            "opt",
        ),
        CommandSpec("plan", "/plan", "memory plan for the current model and context", ""),
        CommandSpec(
            "copy",
            "/copy [code] [N]",
            "copy the last reply or its last code block; N counts back (Ctrl+O, Ctrl+G)",
            "opt",
        ),
        CommandSpec("regenerate", "/regenerate", "a new answer to the last message (Ctrl+R)", ""),
        CommandSpec("edit", "/edit", "edit the last message and send it in its place", ""),
        CommandSpec("remember", "/remember TEXT", "pin a fact to core memory", "text"),
        CommandSpec("forget", "/forget ID|QUERY", "delete memories by id or by search", "text"),
        CommandSpec("recall", "/recall QUERY", "search memory, show what is found", "text"),
        CommandSpec("memory", "/memory", "open the memory screen (F3)", ""),
        CommandSpec("sessions", "/sessions", "pick a saved conversation (F4)", ""),
        CommandSpec("clear", "/clear [NAME]", "a new conversation; the last stays saved", "opt"),
        CommandSpec("session", "/session NAME", "save this session and switch to NAME", "text"),
        CommandSpec("help", "/help", "keys and commands (F1)", ""),
    )
}

# Every key of the chat screen, in the order people look for them (F1 and /help show these).
KEYS: tuple[tuple[str, str], ...] = (
    ("Enter", "send; a long paste shows its size before (`Shift+Enter`/`Ctrl+J`: new line)"),
    ("Up / Down", "previous / next prompt on the first / last line (kept between runs)"),
    ("Esc / Ctrl+C", "stop the model: a prompt being read (taken back), a reply, summaries"),
    ("PageUp / PageDown", "scroll the transcript (typing stays in the prompt)"),
    ("Ctrl+Home / Ctrl+End", "top of the transcript / the newest message (output follows)"),
    ("Ctrl+O", "copy the last reply"),
    ("Ctrl+G", "copy the last code block of the last reply"),
    ("Ctrl+R", "regenerate the last answer (sampled anew)"),
    ("Ctrl+Up", "edit the last message: Enter sends it in its place, Esc keeps the old one"),
    ("F1", "this help"),
    ("F2", "show / hide the gauge and context panel"),
    ("F3", "memory: search, pin an excerpt (`Ctrl+K`), forget (`Delete`, asks first)"),
    ("F4", "saved sessions"),
    ("F5", "models: installed and pullable, with size and fit"),
    ("Ctrl+Q", "quit; saves the session and says how to resume it"),
)


@dataclass(frozen=True)
class Command:
    name: str
    arg: str = ""

    @property
    def number(self) -> int:
        return int(self.arg)


@dataclass(frozen=True)
class CommandError:
    """Text that looked like a command but cannot run; `message` is the one-line notice."""

    message: str


def is_command(text: str) -> bool:
    """A prompt is a command when it starts with '/' followed by a letter ('/ etc' is prose)."""
    stripped = text.lstrip()
    return len(stripped) > 1 and stripped[0] == "/" and stripped[1].isalpha()


def closest(name: str) -> str | None:
    """The command a mistyped name most likely meant (`/hepl` -> help, `/sesions` -> sessions)."""
    found = difflib.get_close_matches(name, COMMANDS, n=1, cutoff=0.5)
    if found:
        return found[0]
    prefixed = [n for n in COMMANDS if name and n.startswith(name[:2])]
    return prefixed[0] if prefixed else None


def parse_command(text: str) -> Command | CommandError:
    head, _, rest = text.strip()[1:].partition(" ")
    name, arg = head.lower(), rest.strip()
    spec = COMMANDS.get(name)
    if spec is None:
        near = closest(name)
        hint = f" (did you mean /{near}?)" if near else ""
        return CommandError(f"unknown command /{name}{hint}; /help lists them")
    if spec.arg in ("text", "int") and not arg:
        return CommandError(f"usage: {spec.usage}")
    if spec.arg == "" and arg:
        return CommandError(f"/{name} takes no argument; usage: {spec.usage}")
    if spec.arg == "int" and (not arg.isdigit() or int(arg) <= 0):
        return CommandError(f"/{name} needs a positive whole number, not '{arg}'")
    return Command(name, arg)


@dataclass(frozen=True)
class CopyTarget:
    code: bool  # a code block (else the whole reply)
    back: int  # 1: the last one, 2: the one before, …


def parse_copy(arg: str) -> CopyTarget | CommandError:
    """`/copy`, `/copy 2`, `/copy code`, `/copy code 2`."""
    words = arg.lower().split()
    code = bool(words) and words[0] == "code"
    rest = words[1:] if code else words
    if len(rest) > 1 or (rest and (not rest[0].isdigit() or int(rest[0]) <= 0)):
        return CommandError("usage: /copy [code] [N] (N: 1 the last, 2 the one before, …)")
    return CopyTarget(code, int(rest[0]) if rest else 1)


SETTINGS = {"max_tokens": (int, 1, 1_000_000), "temperature": (float, 0.0, 2.0)}


def parse_set(arg: str) -> tuple[str, float] | CommandError | None:
    """`/set` -> None (show); `/set max_tokens 4096` -> ("max_tokens", 4096)."""
    words = arg.split()
    if not words:
        return None
    name = words[0].lower().replace("-", "_")
    if name not in SETTINGS or len(words) != 2:
        return CommandError("usage: /set max_tokens N | /set temperature T")
    kind, low, high = SETTINGS[name]
    try:
        value = kind(words[1])
    except ValueError:
        return CommandError(f"/set {name} needs a number, not '{words[1]}'")
    if not low <= value <= high:
        return CommandError(f"/set {name} takes {low} to {high:,}, not {words[1]}")
    return name, value


def help_markdown() -> str:
    """The /help and F1 text: keys first (what people look for), then every command."""
    keys = "\n".join(f"| `{k}` | {d} |" for k, d in KEYS)
    rows = "\n".join(f"| `{s.usage}` | {s.summary} |" for s in COMMANDS.values())
    return (
        "### Keys\n\n"
        f"| key | does |\n|---|---|\n{keys}\n\n"
        "### Commands\n\n"
        f"| command | does |\n|---|---|\n{rows}\n\n"
        "The status line starts with what the model is doing: `ready` only when it is idle.\n"
    )
