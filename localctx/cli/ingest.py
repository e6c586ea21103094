"""`localctx ingest PATH`: index a repository into the archival memory (thin shell)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click

from localctx.cli.checks import text_value
from localctx.cli.common import emit_json, json_option
from localctx.ingest import IngestReport, Progress, WalkOptions, ingest_repo
from localctx.ingest.dense_pass import DENSE_AUTO_CHUNKS, open_code_search
from localctx.ingest.walker import DEFAULT_MAX_FILE_BYTES
from localctx.memory.archival import ArchivalStore

_REFRESH_S = 0.1  # redraw at most 10 times a second: drawing per file would cost more than it


@click.command()
@click.argument("path", type=click.Path(path_type=str), callback=text_value)
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
    help="Index a file the secret rules refuse by name (.env*, *.pem, id_rsa*, ...) or by "
    "content (a private key, an AWS, GitHub, Slack or JWT token).",
)
@click.option(
    "--dense/--no-dense",
    "dense",
    default=None,
    help="Embed the chunks for meaning search (default: when at most "
    f"{DENSE_AUTO_CHUNKS:,} chunks need it; ~20 chunks/s on 2 CPU cores).",
)
@json_option
def ingest(
    path: str,
    max_file_bytes: int,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    allow_secret: tuple[str, ...],
    dense: bool | None,
    as_json: bool,
) -> None:
    """Index a repository into the archival memory (incremental; honours .gitignore)."""
    options = WalkOptions(max_file_bytes, include, exclude, allow_secret)
    mode = "auto" if dense is None else ("on" if dense else "off")
    with ArchivalStore.open() as store:
        if as_json:
            report = ingest_repo(path, store, options)
        elif sys.stderr.isatty():
            report = _with_bar(path, store, options)
        else:
            report = ingest_repo(path, store, options, on_progress=_PlainLines())
        if not as_json:
            _summary(report)
        outcome = open_code_search(
            store, report.repo, dense=mode, progress=_dense_progress(as_json)
        )
        if outcome.embedder is not None:
            outcome.embedder.close()  # type: ignore[attr-defined]
        for notice in outcome.notices:
            click.echo(f"localctx: {notice}", err=True)
        code = outcome.search
        extra = {
            "dense": code.has_dense,
            "dense_embedded": outcome.report.embedded if outcome.report else 0,
            "dense_seconds": round(outcome.report.seconds, 2) if outcome.report else 0.0,
            "dense_chunks_per_second": (
                round(outcome.report.chunks_per_second, 1) if outcome.report else 0.0
            ),
            "dense_missing": code.dense.missing if code.dense else report.chunks,
        }
        if as_json:
            emit_json(report.to_json() | extra)
        elif outcome.report is not None:
            click.echo(
                f"dense: {outcome.report.embedded} chunks embedded in "
                f"{outcome.report.seconds:.1f} s ({outcome.report.chunks_per_second:.1f}/s)"
            )


def _dense_progress(quiet: bool) -> Callable[[int, int], None] | None:
    """Plain lines every 2 s on stderr (rich's bar would start a drawing thread)."""
    if quiet:
        return None
    started = time.monotonic()
    state = {"next": started + 2.0}

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now >= state["next"] or done == total:
            state["next"] = now + 2.0
            rate = done / max(now - started, 1e-6)
            eta = (total - done) / rate if rate else 0.0
            click.echo(
                f"dense: {done}/{total} chunks embedded ({rate:.1f}/s, ~{eta:.0f} s left)",
                err=True,
            )

    return show


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
