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

from localctx.errors import Exit, LocalctxError, from_os_error


class _Group(click.Group):
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
        ctx.invoke(chat)


from localctx.cli.ask import ask  # noqa: E402
from localctx.cli.bench import bench  # noqa: E402
from localctx.cli.chat import chat  # noqa: E402
from localctx.cli.ingest import ingest  # noqa: E402
from localctx.cli.memory import memory, where  # noqa: E402
from localctx.cli.models import models  # noqa: E402
from localctx.cli.plan import plan  # noqa: E402

for _command in (chat, ask, ingest, plan, models, memory, bench, where):
    main.add_command(_command)

from localctx.cli.serve import serve  # noqa: E402

main.add_command(serve)
