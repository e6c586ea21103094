"""`localctx bench`: not built yet."""

from __future__ import annotations

import click

from localctx.errors import NotYetAvailable


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_needle(args: tuple[str, ...]) -> None:
    """Needle-in-a-haystack recall through the memory tiers."""
    raise NotYetAvailable("this benchmark is not yet available in this version")
