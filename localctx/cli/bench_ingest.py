"""`localctx bench ingest`: files/s, the re-ingest speedup and peak memory of an ingest."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from localctx.cli.common import emit_json, json_option


@click.command()
@click.argument("path", required=False, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--synthetic",
    type=click.IntRange(1, 10_000_000),
    default=None,
    help="Ingest a generated tree of this many files instead of PATH.",
)
@click.option(
    "--qa",
    "qa_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A QA set about PATH: adds span recall@5 of lexical search.",
)
@json_option
def bench_ingest(
    path: str | None, synthetic: int | None, qa_file: str | None, as_json: bool
) -> None:
    """First ingest, unchanged re-ingest and peak memory, in a fresh store."""
    from localctx.bench.ingest import ingest_benchmark, synthetic_tree
    from localctx.errors import BadInput

    if (path is None) == (synthetic is None):
        raise BadInput("give a PATH or --synthetic N (one of them)")
    with tempfile.TemporaryDirectory(prefix="localctx-tree-") as tmp:
        root = synthetic_tree(Path(tmp), synthetic) if synthetic else Path(path)  # type: ignore[arg-type]
        result = ingest_benchmark(root, Path(qa_file) if qa_file else None)
    if as_json:
        emit_json(result)
    else:
        click.echo(
            f"{result['files_indexed']} files, {result['chunks']} chunks: "
            f"{result['first_seconds']} s ({result['files_per_second']} files/s), re-ingest "
            f"{result['reingest_seconds']} s ({result['reingest_speedup']}x), "
            f"peak {result['peak_rss_mib']} MiB"
        )
