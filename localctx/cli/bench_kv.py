"""`localctx bench`: not built yet."""

from __future__ import annotations

import click

from localctx.errors import NotYetAvailable


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_kv(args: tuple[str, ...]) -> None:
    """KV cache types: bytes/token, prefill/decode speed, eviction vs re-prefill."""
    raise NotYetAvailable("this benchmark is not yet available in this version")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_ppl(args: tuple[str, ...]) -> None:
    """Perplexity through the sink window (or --full)."""
    raise NotYetAvailable("this benchmark is not yet available in this version")
