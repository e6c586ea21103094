"""`localctx chat` (and `localctx` alone): resolve the settings once, then open the Textual app.

All checks a user can fail (unknown model, bad KV type, a --repo that is not a directory, no
terminal) happen here, before the screen switches to the app, so they print as one line with
their exit code like every other command. The app itself loads the model in a worker.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from localctx.cli.common import engine_options
from localctx.errors import BadInput, Exit, LocalctxError, ModelNotFound
from localctx.models.catalogue import Catalogue
from localctx.runconfig import RunConfig, run_config


@click.command()
@engine_options
@click.option("--repo", type=click.Path(), default=None, help="Chat over this repository.")
@click.option("--session", "session_name", default=None, help="Resume or name a session.")
def chat(
    model: str | None = None,
    kv: str | None = None,
    n_ctx: int | None = None,
    window: int | None = None,
    force: bool = False,
    threads: int | None = None,
    gpu_layers: int | None = None,
    rpc: str | None = None,
    repo: str | None = None,
    session_name: str | None = None,
) -> None:
    """Open the chat app (Textual) on the default model over the current directory."""
    if window is not None and window <= 0:
        raise BadInput(f"--window must be a positive number of tokens, not {window}")
    repo_path = _repo(repo)
    config = _config_or_pull(model, kv, n_ctx, window, force, threads, gpu_layers, rpc)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):  # checked last: bad flags say why
        raise LocalctxError(
            'the chat app needs a terminal; for scripts use: localctx ask "QUESTION"', Exit.USAGE
        )

    from localctx.tui import ChatSettings, make_app

    settings = ChatSettings(
        engine=config.settings if config else None,
        model_name=model or Catalogue.load().default.name,
        window=config.window if config else window,
        repo=repo_path,
        session_name=session_name,
    )
    farewell = make_app(settings).run()
    if farewell:
        click.echo(farewell, err=True)


def _repo(repo: str | None) -> Path | None:
    if repo is None:
        return None
    path = Path(repo).expanduser()
    if not path.is_dir():
        raise BadInput(f"--repo {repo}: {'not a directory' if path.exists() else 'no such path'}")
    return path.resolve()


def _config_or_pull(
    model: str | None,
    kv: str | None,
    n_ctx: int | None,
    window: int | None,
    force: bool,
    threads: int | None,
    gpu_layers: int | None,
    rpc: str | None = None,
) -> RunConfig | None:
    """The planner's settings, or None when the default model is not installed (the app then
    offers to pull it); a model the user named that is missing stays an error."""
    try:
        return run_config(model, kv, n_ctx, window, force, threads, gpu_layers, rpc)
    except ModelNotFound:
        if model is not None or Catalogue.load().default.installed:
            raise
        return None
