"""Slash commands: the table users read in /help, and a pure parser from prompt text.

Parsing is separate from running so every rule (unknown name, missing argument, a number
that is not one) is unit-tested without an app; the app maps a parsed Command to a worker.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandSpec:
    name: str
    usage: str
    summary: str
    arg: str = ""  # "" none, "text" required text, "int" a positive integer, "opt" optional


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("ingest", "/ingest PATH", "index a repository into memory", "text"),
        CommandSpec("repo", "/repo PATH", "index and attach a repository", "text"),
        CommandSpec("model", "/model NAME", "switch model (catalogue name or .gguf path)", "text"),
        CommandSpec("kv", "/kv TYPE", "reload with KV type f16, q8_0, q4_0…", "text"),
        CommandSpec("window", "/window N", "set the sink-window size in tokens", "int"),
        CommandSpec("plan", "/plan", "memory plan for the current model and context", ""),
        CommandSpec("remember", "/remember TEXT", "pin a fact to core memory", "text"),
        CommandSpec("forget", "/forget ID|QUERY", "delete memories by id or by search", "text"),
        CommandSpec("recall", "/recall QUERY", "search memory, show what is found", "text"),
        CommandSpec("memory", "/memory", "open the memory screen (F3)", ""),
        CommandSpec("clear", "/clear", "start a fresh conversation (memory is kept)", ""),
        CommandSpec("session", "/session NAME", "save this session and switch to NAME", "text"),
        CommandSpec("help", "/help", "keys and commands (F1)", ""),
    )
}  # fmt: skip


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


def parse_command(text: str) -> Command | CommandError:
    head, _, rest = text.strip()[1:].partition(" ")
    name, arg = head.lower(), rest.strip()
    spec = COMMANDS.get(name)
    if spec is None:
        close = [n for n in COMMANDS if n.startswith(name[:2])] if name else []
        hint = f" (did you mean /{close[0]}?)" if close else ""
        return CommandError(f"unknown command /{name}{hint}; /help lists them")
    if spec.arg in ("text", "int") and not arg:
        return CommandError(f"usage: {spec.usage}")
    if spec.arg == "" and arg:
        return CommandError(f"/{name} takes no argument; usage: {spec.usage}")
    if spec.arg == "int" and (not arg.isdigit() or int(arg) <= 0):
        return CommandError(f"/{name} needs a positive whole number, not '{arg}'")
    return Command(name, arg)


def help_markdown() -> str:
    """The /help and F1 text: keys first (what people look for), then every command."""
    rows = "\n".join(f"| `{s.usage}` | {s.summary} |" for s in COMMANDS.values())
    return (
        "### Keys\n\n"
        "| key | does |\n|---|---|\n"
        "| `Enter` | send (`Shift+Enter`, `Alt+Enter` or `Ctrl+J`: new line) |\n"
        "| `Up` / `Down` | previous / next prompt (on the first / last line) |\n"
        "| `Esc` / `Ctrl+C` | stop the reply (within one token) |\n"
        "| `F1` | this help |\n"
        "| `F2` | show / hide the gauge and context panel |\n"
        "| `F3` | memory screen |\n"
        "| `Ctrl+Q` | quit (saves the session) |\n\n"
        "### Commands\n\n"
        f"| command | does |\n|---|---|\n{rows}\n"
    )
