"""`localctx ask "QUESTION"`: one answer on stdout, for scripts.

The question comes as the argument, or from stdin (`ask -`) or a file (`--file PATH`) when it
is longer than one argument may be (Linux caps one at 128 KiB). Every value is checked before
the model loads (localctx.cli.checks); the answer, or `--json`'s object, is printed as soon as
it is complete, before the bounded summaries and the snapshot that follow. Ctrl+C stops it at
any point (a prefill within one batch) and exits 130 with one line, never a traceback.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import replace
from pathlib import Path

import click

from localctx.cli.checks import Bounded, NonNegativeFloat, text_value, utf8
from localctx.cli.common import (
    emit_json,
    engine_options,
    evict_options,
    json_option,
    sigint_sets,
)
from localctx.engine import Sampling, load_engine
from localctx.engine.remote import REPLY_DEADLINE_S, open_remote
from localctx.errors import BadInput, Cancelled
from localctx.kv.scoring import needs_queries
from localctx.oneshot import EXPAND_DEFAULT, Answered, answer_once
from localctx.runconfig import run_config

MAX_QUESTION_BYTES = 8 << 20  # ~2M tokens: hours of prefill on a CPU; ingest bigger text


@click.command()
@click.argument("question", required=False)
@click.option(
    "--file",
    "question_file",
    default=None,
    metavar="PATH",
    callback=text_value,
    help="Read the question from this file ('-': stdin); for text longer than an argument.",
)
@engine_options
@click.option("--max-tokens", type=Bounded(1), default=512, show_default=True)
@click.option(
    "--temperature", type=NonNegativeFloat(), default=0.0, show_default=True, help="0 = greedy."
)
@click.option("--seed", type=int, default=0)
@click.option(
    "--session",
    "session_name",
    default=None,
    callback=text_value,
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
    callback=text_value,
    help="Answer with an OpenAI-compatible server (llama-server) instead of a local model.",
)
@click.option(
    "--remote-timeout",
    type=Bounded(1),
    default=int(REPLY_DEADLINE_S),
    show_default=True,
    metavar="SECONDS",
    help="The most a remote reply may take in all (keep-alives do not extend it).",
)
@click.option(
    "--expand/--no-expand",
    default=EXPAND_DEFAULT,
    show_default=True,
    help="Also search the repository with the model's guess at the answering code.",
)
@click.option(
    "--repo",
    default=None,
    callback=text_value,
    help="Answer over this repository (ingested on first use).",
)
@evict_options
@json_option
def ask(
    question: str | None,
    question_file: str | None,
    max_tokens: int,
    temperature: float,
    seed: int,
    session_name: str | None,
    recall: str,
    expand: bool,
    repo: str | None,
    remote: str | None,
    remote_timeout: int,
    evict: str,
    recent: int | None,
    as_json: bool,
    **engine_opts: object,
) -> None:
    """Answer one question on stdout (streams; --json prints one object when it is done)."""
    text = read_question(question, question_file)
    repo_path = _repo(repo)
    if remote and evict != "window":
        raise BadInput(f"--evict {evict} reads the local KV cache; a --remote server keeps its own")
    remote_engine = (
        open_remote(remote, model=engine_opts.get("model"), deadline=float(remote_timeout))
        if remote
        else None
    )
    config = run_config(**engine_opts) if remote_engine is None else None  # type: ignore[arg-type]
    if config is not None and needs_queries(evict):
        config = replace(config, settings=replace(config.settings, capture_queries=True))
    settings = config.settings if config else remote_engine.settings  # type: ignore[union-attr]
    model_path = remote_engine.url if remote_engine else str(settings.model_path)
    sampling = Sampling(max_tokens=max_tokens, temperature=temperature, seed=seed)
    with (
        sigint_sets(threading.Event()) as interrupted,
        remote_engine or load_engine(settings) as engine,
    ):
        # The planner's sink window when the context does not fit memory, or --window; a
        # remote server owns its cache, so there only --window applies.
        window = config.window if config else engine_opts.get("window")
        window = window if isinstance(window, int) else None

        def answered(done: Answered) -> None:
            if not as_json:
                sys.stdout.write("\n")
                sys.stdout.flush()
                return
            result = done.result
            emit_json(
                {
                    "answer": result.answer,
                    "model": engine.model_name,
                    "model_path": model_path,
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

        done = answer_once(
            engine,
            text,
            sampling,
            repo=repo_path,
            session_name=session_name,
            window=window,
            recall_all=recall == "all",
            expand=expand,
            on_text=None if as_json else _stream_out,
            gauge=as_json,
            on_answered=answered,
            cancel=interrupted,
            evict=evict,
            recent=recent,
        )
        if interrupted.is_set():  # during the reply: what streamed stays printed
            raise Cancelled("interrupted")
        for notice in done.notices:
            click.echo(f"localctx: {notice}", err=True)


def read_question(question: str | None, question_file: str | None) -> str:
    """The question's text from the argument, stdin ('-') or --file; BadInput when it is
    missing, empty, not UTF-8 or over MAX_QUESTION_BYTES."""
    if question is not None and question_file is not None:
        raise BadInput("give the question as an argument or with --file, not both")
    if question is None and question_file is None:
        raise click.UsageError(
            "missing the question: give QUESTION, '-' (stdin) or --file PATH",
            click.get_current_context(silent=True),
        )
    source = question_file if question_file is not None else question
    if source == "-" or question_file is not None:
        data = _read_bytes(source or "-")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            where = "stdin" if source == "-" else source
            raise BadInput(
                f"the question in {where} is not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                f"offset {exc.start})"
            ) from None
        text = text.removeprefix("\ufeff")
    else:
        text = utf8(source or "", "the question")
    if not text.strip():
        raise BadInput("nothing to ask: the question is empty")
    return text


def _read_bytes(source: str) -> bytes:
    try:
        if source == "-":
            data = sys.stdin.buffer.read(MAX_QUESTION_BYTES + 1)
        else:
            with open(source, "rb") as fh:
                data = fh.read(MAX_QUESTION_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"cannot read the question from {source}: {exc.strerror or exc}") from None
    if len(data) > MAX_QUESTION_BYTES:
        raise BadInput(
            f"the question is over {MAX_QUESTION_BYTES >> 20} MiB: ingest long text as a "
            "repository (localctx ingest) and ask about it with --repo"
        )
    return data


def _repo(repo: str | None) -> str | None:
    """--repo checked before the model loads: one line and exit 9 when it cannot be used."""
    if repo is None:
        return None
    from localctx.ingest.indexer import resolve_repo

    return str(resolve_repo(Path(repo)))


def _stream_out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
