"""`localctx memory` and `localctx where`: not built yet."""

from __future__ import annotations

import click

from localctx.errors import NotYetAvailable


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def memory(args: tuple[str, ...]) -> None:
    """List, search, show, forget and export what localctx remembers."""
    raise NotYetAvailable("'memory' is not yet available in this version")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def where(args: tuple[str, ...]) -> None:
    """Print where localctx keeps its database, data and models."""
    raise NotYetAvailable("'where' is not yet available in this version")
