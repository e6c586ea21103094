"""`localctx ingest PATH`: index a repository into the archival memory (thin shell)."""

from __future__ import annotations

import sys
import time

import click

from localctx.cli.common import emit_json, json_option
from localctx.ingest import IngestReport, Progress, WalkOptions, ingest_repo
from localctx.ingest.walker import DEFAULT_MAX_FILE_BYTES
from localctx.memory.archival import ArchivalStore

_REFRESH_S = 0.1  # redraw at most 10 times a second: drawing per file would cost more than it


@click.command()
@click.argument("path", type=click.Path(path_type=str))
@click.option(
    "--max-file-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_FILE_BYTES,
    show_default=True,
    help="Skip files larger than this.",
)
@click.option("--include", multiple=True, metavar="GLOB", help="Index only matching files.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip matching paths.")
@click.option(
    "--allow-secret",
    multiple=True,
    metavar="GLOB",
    help="Index a file the secret rules refuse (.env*, *.pem, *.key, id_rsa*, ...).",
)
@json_option
def ingest(
    path: str,
    max_file_bytes: int,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    allow_secret: tuple[str, ...],
    as_json: bool,
) -> None:
    """Index a repository into the archival memory (incremental; honours .gitignore)."""
    options = WalkOptions(max_file_bytes, include, exclude, allow_secret)
    with ArchivalStore.open() as store:
        if as_json:
            report = ingest_repo(path, store, options)
            emit_json(report)
        elif sys.stderr.isatty():
            report = _with_bar(path, store, options)
            _summary(report)
        else:
            report = ingest_repo(path, store, options, on_progress=_PlainLines())
            _summary(report)


def _with_bar(path: str, store: ArchivalStore, options: WalkOptions) -> IngestReport:
    from rich.progress import Progress as Bar
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (
        SpinnerColumn(),
        TextColumn("{task.completed} files"),
        TextColumn("{task.fields[rate]:.0f} files/s"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[current]}", style="dim"),
    )
    # auto_refresh off: no drawing thread, so worker processes fork from a single thread.
    with Bar(*columns, transient=True, auto_refresh=False) as bar:
        task = bar.add_task("ingest", total=None, rate=0.0, current="")
        last = 0.0

        def update(p: Progress) -> None:
            nonlocal last
            if p.seconds - last >= _REFRESH_S:
                last = p.seconds
                rate = p.files_seen / p.seconds if p.seconds else 0.0
                bar.update(task, completed=p.files_seen, rate=rate, current=p.relpath[-60:])
                bar.refresh()

        return ingest_repo(path, store, options, on_progress=update)


class _PlainLines:
    """One line every 2 s when stderr is not a terminal (logs, CI)."""

    def __init__(self) -> None:
        self._next = time.monotonic() + 2.0

    def __call__(self, p: Progress) -> None:
        if time.monotonic() >= self._next:
            self._next += 2.0
            click.echo(f"ingest: {p.files_seen} files seen, at {p.relpath}", err=True)


def _summary(report: IngestReport) -> None:
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(report.skipped.items())) or "none"
    click.echo(
        f"{report.repo}: {report.files_indexed} indexed, {report.files_unchanged} unchanged, "
        f"{report.files_removed} removed; {report.chunks} chunks; "
        f"{report.seconds:.2f} s ({report.files_per_second:.0f} files/s); skipped: {skipped}"
    )
