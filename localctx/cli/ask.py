"""`localctx ask "QUESTION"`: one answer on stdout, for scripts. Ctrl+C stops it at any point
(a prefill within one batch) and exits 130 with one line, never a traceback."""

from __future__ import annotations

import sys
import threading

import click

from localctx.cli.common import emit_json, engine_options, json_option, sigint_sets
from localctx.engine import Sampling, load_engine
from localctx.engine.remote import open_remote
from localctx.errors import Cancelled
from localctx.oneshot import EXPAND_DEFAULT, answer_once
from localctx.runconfig import run_config


@click.command()
@click.argument("question")
@engine_options
@click.option("--max-tokens", type=int, default=512, show_default=True)
@click.option("--temperature", type=float, default=0.0, show_default=True, help="0 = greedy.")
@click.option("--seed", type=int, default=0)
@click.option(
    "--session",
    "session_name",
    default=None,
    help="Resume or name a session (without one, nothing of the conversation is kept).",
)
@click.option(
    "--recall",
    type=click.Choice(["session", "all"]),
    default="session",
    show_default=True,
    help="Recall from this session's memory only, or from every session's.",
)
@click.option(
    "--remote",
    default=None,
    metavar="URL",
    help="Answer with an OpenAI-compatible server (llama-server) instead of a local model.",
)
@click.option(
    "--expand/--no-expand",
    default=EXPAND_DEFAULT,
    show_default=True,
    help="Also search the repository with the model's guess at the answering code.",
)
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Answer over this repository (ingested on first use).",
)
@json_option
def ask(
    question: str,
    max_tokens: int,
    temperature: float,
    seed: int,
    session_name: str | None,
    recall: str,
    expand: bool,
    repo: str | None,
    remote: str | None,
    as_json: bool,
    **engine_opts: object,
) -> None:
    """Answer one question on stdout (streams; --json prints one object at the end)."""
    remote_engine = open_remote(remote, model=engine_opts.get("model")) if remote else None
    config = run_config(**engine_opts) if remote_engine is None else None  # type: ignore[arg-type]
    settings = config.settings if config else remote_engine.settings  # type: ignore[union-attr]
    sampling = Sampling(max_tokens=max_tokens, temperature=temperature, seed=seed)
    with (
        sigint_sets(threading.Event()) as interrupted,
        remote_engine or load_engine(settings) as engine,
    ):
        # The planner's sink window when the context does not fit memory, or --window; a
        # remote server owns its cache, so there only --window applies.
        window = config.window if config else engine_opts.get("window")
        window = window if isinstance(window, int) else None
        echo = None if as_json else _stream_out
        done = answer_once(
            engine,
            question,
            sampling,
            repo=repo,
            session_name=session_name,
            window=window,
            recall_all=recall == "all",
            expand=expand,
            on_text=echo,
            gauge=as_json,
            cancel=interrupted,
        )
        if interrupted.is_set():  # during the reply: what streamed stays printed
            sys.stdout.write("\n")
            raise Cancelled("interrupted")
        for notice in done.notices:
            click.echo(f"localctx: {notice}", err=True)
        result = done.result
        if as_json:
            emit_json(
                {
                    "answer": result.answer,
                    "model": engine.model_name,
                    "model_path": str(settings.model_path),
                    "prompt_tokens": result.prompt_tokens,
                    "completion_tokens": result.completion_tokens,
                    "prefill_tps": round(result.prefill_tps, 2),
                    "decode_tps": round(result.decode_tps, 2),
                    "first_token_seconds": (
                        round(done.first_token_seconds, 3)
                        if done.first_token_seconds is not None
                        else None
                    ),
                    "stop_reason": result.stop_reason,
                    "n_ctx": engine.n_ctx,
                    "type_k": settings.type_k,
                    "type_v": settings.type_v,
                    "session": session_name,
                    "recall": recall,
                    "sources": [
                        item.to_json() | {"citation": item.citation}
                        for item in result.recalled
                        if item.source == "archival"
                    ],
                    "recalled": [item.to_json() for item in result.recalled],
                    "gauge": done.gauge.to_json() if done.gauge else None,
                }
            )
        else:
            sys.stdout.write("\n")


def _stream_out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
