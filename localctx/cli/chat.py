"""`localctx chat` (and `localctx` alone): resolve the settings once, then open the Textual app.

All checks a user can fail (unknown model, bad KV type, a --repo that is not a directory, a
--session another process has open, no terminal) happen here, before the screen switches to
the app, so they print as one line with their exit code like every other command. The app
itself loads the model in a worker.

Which repository: `--repo PATH`; else the current directory when it is a git work tree and
not the home directory (or above it) — ingesting a home directory unasked would index every
file the user owns; `--no-repo` chats over nothing. A resumed `--session` comes back with the
/kv, /window and /set choices it was left with, unless a flag says otherwise.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click

from localctx.cli.checks import Bounded, NonNegativeFloat, text_value
from localctx.cli.common import engine_options, evict_options
from localctx.engine.base import Sampling
from localctx.errors import BadInput, Exit, LocalctxError, ModelNotFound
from localctx.kv.scoring import needs_queries
from localctx.memory.locks import SessionLock
from localctx.models.catalogue import Catalogue
from localctx.runconfig import RunConfig, run_config

# Replies stop at this many tokens unless --max-tokens or /set say otherwise: long enough for
# a file's worth of code, short enough that a small model looping on itself ends (~40 s at
# the default model's ~55 tok/s here). The footer says when a reply hit it.
CHAT_MAX_TOKENS = 2048


def default_repo(cwd: Path, home: Path) -> Path | None:
    """The directory `chat` attaches without --repo: cwd if it is inside a git work tree and
    is neither the home directory nor one of its parents (pure but for reading `.git`)."""
    cwd, home = cwd.resolve(), home.resolve()
    if cwd == home or cwd in home.parents:
        return None
    for folder in (cwd, *cwd.parents):
        if folder == home or folder in home.parents:
            return None  # not under a repository below the home directory
        if (folder / ".git").exists():
            return cwd
    return None


@click.command()
@engine_options
@evict_options
@click.option("--repo", default=None, callback=text_value, help="Chat over this repository.")
@click.option(
    "--no-repo", is_flag=True, help="Chat over no repository (not even the current directory)."
)
@click.option(
    "--session",
    "session_name",
    default=None,
    callback=text_value,
    help="Resume or name a session (one process at a time: a second one is refused).",
)
@click.option(
    "--max-tokens",
    type=Bounded(1),
    default=None,
    help=f"Longest reply in tokens [default: {CHAT_MAX_TOKENS}; /set max_tokens in the app].",
)
@click.option(
    "--temperature",
    type=NonNegativeFloat(),
    default=None,
    help="Sampling temperature; 0 is greedy [default: 0; /set temperature in the app].",
)
def chat(
    model: str | None = None,
    kv: str | None = None,
    n_ctx: int | None = None,
    window: int | None = None,
    force: bool = False,
    threads: int | None = None,
    gpu_layers: int | None = None,
    rpc: str | None = None,
    evict: str = "window",
    recent: int | None = None,
    repo: str | None = None,
    no_repo: bool = False,
    session_name: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> None:
    """Open the chat app (Textual) on the default model; over --repo PATH, or over the
    current directory when it is a git repository (never the home directory)."""
    if window is not None and window <= 0:
        raise BadInput(f"--window must be a positive number of tokens, not {window}")
    if temperature is not None and temperature > 2.0:
        raise BadInput(f"--temperature must be at most 2, got {temperature}")
    if repo is not None and no_repo:
        raise BadInput("--repo and --no-repo contradict each other")
    repo_path = _repo(repo) if repo is not None else None
    if repo is None and not no_repo:
        repo_path = default_repo(Path.cwd(), Path.home())
    from localctx.tui import ChatSettings, make_app
    from localctx.tui.state import load_prefs

    prefs = load_prefs(session_name) if session_name else None
    if prefs is not None:  # the session's own choices, unless a flag overrides them
        kv = kv or prefs.kv
        window = window or prefs.window
        max_tokens = max_tokens or prefs.max_tokens
        temperature = temperature if temperature is not None else prefs.temperature
    config = _config_or_pull(model, kv, n_ctx, window, force, threads, gpu_layers, rpc)
    if session_name is not None:  # before the screen opens; the app's worker then holds it
        SessionLock.check_free(session_name)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):  # checked last: bad flags say why
        raise LocalctxError(
            'the chat app needs a terminal; for scripts use: localctx ask "QUESTION"', Exit.USAGE
        )
    sampling = replace(
        Sampling(),
        max_tokens=max_tokens or CHAT_MAX_TOKENS,
        temperature=temperature if temperature is not None else 0.0,
    )
    engine = config.settings if config else None
    if engine is not None and needs_queries(evict):
        engine = replace(engine, capture_queries=True)
    settings = ChatSettings(
        engine=engine,
        evict=evict,
        recent=recent,
        model_name=model or Catalogue.load().default.name,
        window=config.window if config else window,
        repo=repo_path,
        session_name=session_name,
        sampling=sampling,
    )
    farewell = make_app(settings).run()
    if farewell:
        click.echo(farewell, err=True)


def _repo(repo: str) -> Path:
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
