"""`localctx memory …` (what localctx remembers) and `localctx where` (where it keeps things)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from localctx import paths
from localctx.cli.common import emit_json, json_option
from localctx.errors import BadInput
from localctx.memory.explicit import forget_everywhere
from localctx.memory.recall import RecallHit, RecallStore
from localctx.memory.snapshots import SnapshotStore


@contextmanager
def _store() -> Iterator[RecallStore]:
    store = RecallStore()
    try:
        yield store
    finally:
        store.close()


def _hit_json(hit: RecallHit) -> dict[str, Any]:
    return {
        "id": hit.id,
        "kind": hit.kind,
        "session": hit.session,
        "text": hit.text,
        "summary": hit.summary,
        "score": round(hit.score, 4),
    }


def _line(hit: RecallHit) -> str:
    text = " ".join(hit.text.split())
    where = f" [{hit.session}]" if hit.session else ""
    return f"{hit.id:>7}  {hit.kind:<8}{where} {text[:100]}"


@click.group()
def memory() -> None:
    """List, search, show, forget and export what localctx remembers; list the sessions."""


@memory.command("list")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@json_option
def list_(limit: int, as_json: bool) -> None:
    """Newest messages, evicted segments and core memories."""
    with _store() as store:
        items = store.list_items(limit)
    if as_json:
        emit_json({"items": [_hit_json(h) for h in items]})
        return
    for hit in items:
        click.echo(_line(hit))


@memory.command("search")
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--repo", default=None, help="Search this ingested repository's files instead.")
@json_option
def search(query: str, k: int, repo: str | None, as_json: bool) -> None:
    """BM25 search (any text is safe: quotes, AND, *, : are taken literally)."""
    if repo is not None:
        from localctx.ingest import search_repo

        hits = search_repo(repo, query, k)
        rows = [
            {"id": f"{h.path}:{h.start_line}-{h.end_line}", "kind": "file", **h.to_json()}
            for h in hits
        ]
        if as_json:
            emit_json({"query": query, "repo": repo, "hits": rows})
        else:
            for row in rows:
                click.echo(f"{row['id']}  {row['symbol']}")
        return
    with _store() as store:
        found = store.search(query, k)
    if as_json:
        emit_json({"query": query, "hits": [_hit_json(h) for h in found]})
        return
    for hit in found:
        click.echo(_line(hit))


@memory.command("show")
@click.argument("item_id")
@json_option
def show(item_id: str, as_json: bool) -> None:
    """One item in full (ids: m12 message, s3 evicted segment, c2 core memory)."""
    with _store() as store:
        hit = store.get(item_id)
    if hit is None:
        raise BadInput(f"no memory item '{item_id}' (ids look like m12, s3, c2)")
    if as_json:
        emit_json(_hit_json(hit))
        return
    click.echo(f"{hit.id} ({hit.kind}{', session ' + hit.session if hit.session else ''})")
    click.echo(hit.text)
    if hit.summary:
        click.echo(f"\nsummary: {hit.summary}")


@memory.command("forget")
@click.argument("id_or_query")
@json_option
def forget(id_or_query: str, as_json: bool) -> None:
    """Delete an item by id, or every item containing all words of a query — with the
    summaries built from it and every KV snapshot that holds it."""
    with _store() as store:
        gone, snapshots = forget_everywhere(store, SnapshotStore(), id_or_query)
    if as_json:
        emit_json({"forgotten": list(gone.ids), "snapshots_deleted": len(snapshots)})
        return
    if not gone.ids:
        click.echo("nothing matched; nothing was forgotten")
        return
    click.echo(f"forgot {len(gone.ids)} item(s): {' '.join(gone.ids)}")
    if snapshots:
        click.echo(f"deleted {len(snapshots)} KV snapshot(s) that held them")


@memory.command("export")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "json"]), default="jsonl", show_default=True
)
@json_option
def export(fmt: str, as_json: bool) -> None:
    """Everything in the recall store: one JSON line per item (or one object with --json)."""
    with _store() as store:
        items = list(store.iter_all())
    if as_json or fmt == "json":
        emit_json({"items": items})
        return
    for item in items:
        sys.stdout.write(json.dumps(item) + "\n")


@memory.command("sessions")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@json_option
def sessions(limit: int, as_json: bool) -> None:
    """Saved conversations, most recently active first: name, messages, size, newest message
    (resume one with `localctx chat --session NAME`)."""
    with _store() as store:
        rows = store.sessions(limit)
    if as_json:
        emit_json({"sessions": [row.to_json() for row in rows]})
        return
    if not rows:
        click.echo("no sessions yet")
    for row in rows:
        last = " ".join(row.last_text.split())[:60]
        who = f"{row.last_role}: " if row.last_role else ""
        click.echo(
            f"{row.name:<36} {row.active_at}  {row.messages:>5} msgs "
            f"{row.text_bytes:>9,} B  {who}{last}"
        )


@memory.command("stats")
@json_option
def stats(as_json: bool) -> None:
    """Counts and bytes on disk, per tier."""
    with _store() as store:
        counts = store.counts()
        recall_bytes = store.file_bytes()
        path = store.path
    snaps = SnapshotStore().stats()
    report = {**counts, "recall_bytes": recall_bytes, **snaps, "db": str(path)}
    if as_json:
        emit_json(report)
        return
    for key, value in report.items():
        click.echo(f"{key:>18}: {value}")


WHERE = {"db": paths.db_dir, "data": paths.home, "models": paths.models_dir}


@click.command()
@click.argument("what", required=False, type=click.Choice(sorted(WHERE)))
@json_option
def where(what: str | None, as_json: bool) -> None:
    """Print where localctx keeps its database, data and models."""
    chosen = [what] if what else sorted(WHERE)
    found = {name: str(WHERE[name]()) for name in chosen}
    if as_json:
        emit_json(found)
    elif what:
        click.echo(found[what])
    else:
        for name, path in found.items():
            click.echo(f"{name:>6}: {path}")
