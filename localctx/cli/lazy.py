"""A click group whose commands are imported when they run, not when the CLI starts.

`localctx --help` imported 94 of localctx's modules (numpy, tree-sitter, the benchmarks) to
print nine lines; each command now names the module it lives in and its one-line help, and
its module is imported only when the command runs or prints its own help. A test keeps each
line here equal to its command's real `--help` line.

Must not: import a command module at start-up, or hold any logic of a command.
"""

from __future__ import annotations

import importlib
from typing import Any

import click


class LazyGroup(click.Group):
    """`lazy` maps a command's name to ("module:attribute", its one-line help)."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in self.lazy:
            return command
        target, _ = self.lazy[cmd_name]
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command), target
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The listing from the one-line helps, without importing a command (cut to the
        terminal's width as click cuts them)."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = self.commands.get(name)
            if command is None:
                rows.append((name, _short_help(self.lazy[name][1], limit)))
            elif not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _short_help(line: str, limit: int) -> str:
    """`line` cut to `limit` as click cuts a command's help (a bare Command costs nothing)."""
    return click.Command(None, help=line).get_short_help_str(limit)
