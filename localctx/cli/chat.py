"""`localctx chat`: the Textual app (the default command)."""

from __future__ import annotations

import click

from localctx.cli.common import engine_options
from localctx.errors import NotYetAvailable


@click.command()
@engine_options
@click.option("--repo", type=click.Path(), default=None, help="Chat over this repository.")
@click.option("--session", "session_name", default=None, help="Resume or name a session.")
def chat(**options: object) -> None:
    """Open the chat app (Textual) on the default model over the current directory."""
    raise NotYetAvailable('the chat app is not yet available; use: localctx ask "QUESTION"')
