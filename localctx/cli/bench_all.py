"""`localctx bench`: not built yet."""

from __future__ import annotations

import click

from localctx.errors import NotYetAvailable


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_all(args: tuple[str, ...]) -> None:
    """The whole suite against raw llama-cpp-python, with a report."""
    raise NotYetAvailable("this benchmark is not yet available in this version")
