"""`localctx ingest`: not built yet (see the README's roadmap)."""

from __future__ import annotations

import click

from localctx.errors import NotYetAvailable


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ingest(args: tuple[str, ...]) -> None:
    """Index a repository into the archival memory."""
    raise NotYetAvailable("'ingest' is not yet available in this version")
