"""The `localctx` command: a thin dispatch layer, one command -> one call into a domain module.

Every error a user can act on is a LocalctxError: printed as one line on stderr with its exit
code. Anything else is a bug: one line naming it, exit 70, and the traceback only with
LOCALCTX_DEBUG=1.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from localctx.errors import Exit, LocalctxError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LocalctxError as exc:
            click.echo(f"localctx: {exc}", err=True)
            sys.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            click.echo("localctx: interrupted", err=True)
            sys.exit(int(Exit.INTERRUPTED))
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("LOCALCTX_DEBUG"):
                raise
            click.echo(f"localctx: internal error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(int(Exit.INTERNAL))


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
