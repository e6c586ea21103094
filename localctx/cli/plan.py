"""`localctx plan`: not built yet (see the README's roadmap)."""

from __future__ import annotations

import click

from localctx.errors import NotYetAvailable


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def plan(args: tuple[str, ...]) -> None:
    """Plan KV cache and memory for a model and context before loading it."""
    raise NotYetAvailable("'plan' is not yet available in this version")
