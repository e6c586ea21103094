"""Shared CLI pieces: JSON output and the options several commands take."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from localctx.cli.checks import THREADS, Bounded, text_value

F = TypeVar("F", bound=Callable[..., Any])


def emit_json(obj: Any) -> None:
    """Print exactly one JSON object on stdout (the CLI contract)."""
    sys.stdout.write(json.dumps(obj, default=_default) + "\n")
    sys.stdout.flush()


def _default(obj: Any) -> Any:
    if hasattr(obj, "to_json"):
        return obj.to_json()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(func)


def evict_options(func: F) -> F:
    """--evict/--recent: which cells leave a full sink window (kv/scoring.py)."""
    from localctx.kv.scoring import POLICIES

    func = click.option(
        "--recent",
        type=click.IntRange(0),
        default=None,
        help="Newest tokens a scored policy never evicts (default: half the window).",
    )(func)
    return click.option(
        "--evict",
        type=click.Choice(POLICIES),
        default="window",
        show_default=True,
        help="Eviction policy: the oldest block (window) or the lowest-scoring cells.",
    )(func)


def engine_options(func: F) -> F:
    """--model/--kv/--ctx/--window/--force/--threads/--gpu-layers/--rpc: chat, ask, bench."""
    options = [
        click.option(
            "--model", "-m", default=None, callback=text_value, help="Catalogue name or .gguf path."
        ),
        click.option(
            "--kv",
            default=None,
            callback=text_value,
            help="KV cache type for K and V (f16, q8_0, q4_0, …).",
        ),
        click.option("--ctx", "n_ctx", type=int, default=None, help="Context size in tokens."),
        click.option("--window", type=int, default=None, help="Sink-window size in tokens."),
        click.option("--force", is_flag=True, help="Allow a context above the trained one."),
        click.option(
            "--threads", type=THREADS, default=None, help="CPU threads, 1-512 (default: all)."
        ),
        click.option(
            "--gpu-layers", type=Bounded(-1), default=None, help="Layers to offload (-1: all)."
        ),
        click.option(
            "--rpc",
            default=None,
            callback=text_value,
            metavar="HOST:PORT[,HOST:PORT]",
            help="Offload layers to llama.cpp RPC servers (a build with -DGGML_RPC=ON).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@contextlib.contextmanager
def sigint_sets(event: threading.Event) -> Iterator[threading.Event]:
    """Ctrl+C (SIGINT) sets `event` instead of raising KeyboardInterrupt.

    Why: while llama.cpp prefills, Python runs only inside its abort callback; a
    KeyboardInterrupt raised there is printed as a traceback by ctypes and dropped, and the
    prefill went on (one `ask` answered in full 121 s later and exited 0). The engine's abort
    callback reads the event instead, so the prefill stops within one batch.
    """
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: event.set())
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)
