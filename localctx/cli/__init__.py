"""The `localctx` command: a thin dispatch layer, one command -> one call into a domain module.

Every error a user can act on is a LocalctxError: printed as one line on stderr with its exit
code. Anything else is a bug: one line naming it, exit 70, and the traceback only with
LOCALCTX_DEBUG=1.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, NoReturn

import click

from localctx.cli.lazy import LazyGroup
from localctx.errors import Exit, LocalctxError, from_os_error

# Each command's module and its one-line help: `--help` imports none of them (cli/lazy.py).
COMMANDS = {
    "chat": (
        "localctx.cli.chat:chat",
        "Open the chat app (Textual) on the default model; over --repo PATH, or over the "
        "current directory when it is a git repository (never the home directory).",
    ),
    "ask": (
        "localctx.cli.ask:ask",
        "Answer one question on stdout (streams; --json prints one object when it is done).",
    ),
    "ingest": (
        "localctx.cli.ingest:ingest",
        "Index a repository into the archival memory (incremental; honours .gitignore).",
    ),
    "plan": (
        "localctx.cli.plan:plan",
        "Plan KV cache and memory for a model and context before loading it.",
    ),
    "models": ("localctx.cli.models:models", "The model catalogue: list, pull, info."),
    "memory": (
        "localctx.cli.memory:memory",
        "List, search, show, forget and export what localctx remembers; list the sessions.",
    ),
    "where": (
        "localctx.cli.memory:where",
        "Print where localctx keeps its database, data and models.",
    ),
    "bench": (
        "localctx.cli.bench:bench",
        "Benchmarks, measured and never asserted: kv ppl needle qa retrieval product serve ...",
    ),
    "serve": (
        "localctx.cli.serve:serve",
        "Serve the model as an OpenAI-compatible API (/v1/chat/completions) with sessions.",
    ),
}


class _Group(LazyGroup):
    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:  # the top level's own flags
            _usage_line(exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LocalctxError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            click.echo("localctx: interrupted", err=True)
            sys.exit(int(Exit.INTERRUPTED))
        except click.UsageError as exc:  # a subcommand's flags: one line, like every error
            _usage_line(exc)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("LOCALCTX_DEBUG"):
                raise
            known = _environment_fault(exc)
            if known is not None:
                _fail(known)
            click.echo(f"localctx: internal error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(int(Exit.INTERNAL))


_HELP_ERRORS = tuple(
    t for t in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if t is not None
)


def _fail(exc: LocalctxError) -> NoReturn:
    click.echo(f"localctx: {exc}", err=True)
    sys.exit(int(exc.exit_code))


def _usage_line(exc: click.UsageError) -> NoReturn:
    if isinstance(exc, _HELP_ERRORS):  # a group run bare: its help is the answer
        raise exc
    where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
    click.echo(f"localctx: {exc.format_message()}{where}", err=True)
    sys.exit(int(Exit.USAGE))


def _environment_fault(exc: Exception) -> LocalctxError | None:
    """A full disk, a read-only mount or a missing permission that reached the top without
    a domain module naming it: still the user's to fix, not a bug."""
    import sqlite3

    from localctx import paths

    if isinstance(exc, sqlite3.Error):
        from localctx.memory.db import classify

        return classify(exc, paths.data_location())
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename else "localctx's data"
        return from_os_error(exc, str(where))
    return None


@click.group(
    cls=_Group,
    lazy=COMMANDS,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="localctx")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Long-context chat over a whole codebase, on your own machine (llama.cpp)."""
    logging.basicConfig(
        level=logging.DEBUG if os.environ.get("LOCALCTX_DEBUG") else logging.WARNING,
        format="localctx: %(message)s",
    )
    if ctx.invoked_subcommand is None:
        chat = main.get_command(ctx, "chat")
        assert chat is not None
        ctx.invoke(chat)
