"""`localctx serve`: resolve the settings like `chat`, load the model, serve until stopped."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import click

from localctx.cli.common import engine_options, evict_options
from localctx.engine import load_engine
from localctx.kv.scoring import needs_queries
from localctx.runconfig import run_config


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (not loopback: needs --api-key).",
)
@click.option("--port", type=int, default=8080, show_default=True, help="0: any free port.")
@engine_options
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Answer over this repository (ingested on first use).",
)
@click.option(
    "--api-key",
    envvar="LOCALCTX_API_KEY",
    default=None,
    help="Require Authorization: Bearer KEY (or set LOCALCTX_API_KEY).",
)
@click.option(
    "--max-queue",
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="Requests that may wait for the model; beyond it: 503 with Retry-After.",
)
@click.option(
    "--max-body",
    type=click.IntRange(1024),
    default=16 << 20,
    show_default=True,
    help="Largest request body in bytes (413 beyond).",
)
@evict_options
def serve(
    host: str,
    port: int,
    repo: str | None,
    api_key: str | None,
    max_queue: int,
    max_body: int,
    evict: str,
    recent: int | None,
    **engine_opts: object,
) -> None:
    """Serve the model as an OpenAI-compatible API (/v1/chat/completions) with sessions."""
    from localctx.serve import ServeConfig
    from localctx.serve.server import check_bind
    from localctx.serve.server import serve as run

    check_bind(host, port, api_key)  # before the model loads: a refused bind is instant
    config = run_config(**engine_opts)  # type: ignore[arg-type]
    settings = replace(config.settings, capture_queries=needs_queries(evict))
    logging.getLogger("localctx.serve").setLevel(logging.INFO)
    serve_config = ServeConfig(
        host=host,
        port=port,
        api_key=api_key,
        max_queue=max_queue,
        max_body=max_body,
        window=config.window,
        repo=Path(repo) if repo else None,
        evict=evict,
        recent=recent,
    )
    with load_engine(settings) as engine:
        run(
            engine,
            serve_config,
            model_path=Path(config.settings.model_path),
            announce=lambda line: click.echo(f"localctx: {line}", err=True),
        )
    click.echo("localctx: stopped; every session's context was saved", err=True)
