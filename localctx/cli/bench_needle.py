"""`localctx bench needle`: facts planted deep in a long conversation, asked back later."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from localctx.bench.texts import DEFAULT_PROSE
from localctx.cli.common import emit_json, evict_options, json_option
from localctx.errors import BadInput
from localctx.models.catalogue import resolve_model

DEFAULT_TEXT = DEFAULT_PROSE


@click.command()
@click.option("--history", type=click.IntRange(256), default=None, help="History tokens.")
@click.option("--window", type=click.IntRange(64), default=None, help="Sink window (cells).")
@click.option("--facts", type=click.IntRange(1, 120), default=5, show_default=True)
@click.option("--model", "-m", default=None, help="Catalogue name or .gguf path.")
@click.option("--text", "text_path", type=click.Path(), default=None, help="Filler prose.")
@click.option("--summaries", type=click.IntRange(0), default=2, show_default=True,
              help="Segments summarized with the model (cost is reported).")  # fmt: skip
@click.option(
    "--paraphrase",
    is_flag=True,
    help="Ask without the facts' template words ('Which number opens ...').",
)
@evict_options
@click.option(
    "--recall",
    type=click.Choice(["on", "off"]),
    default="on",
    show_default=True,
    help="off: nothing is recalled; facts must survive in the KV cache itself.",
)
@click.option("--seed", type=int, default=0)
@click.option("--threads", type=int, default=None)
@json_option
def bench_needle(
    history: int | None,
    window: int | None,
    facts: int,
    model: str | None,
    text_path: str | None,
    summaries: int,
    paraphrase: bool,
    evict: str,
    recent: int | None,
    recall: str,
    seed: int,
    threads: int | None,
    as_json: bool,
) -> None:
    """Needle-in-a-haystack recall through the memory tiers (no flags: the whole grid)."""
    from localctx.bench.needle import grid, run_needle, to_json

    path = Path(text_path) if text_path else DEFAULT_TEXT
    if not path.is_file():
        raise BadInput(f"filler text not found: {path} (pass --text FILE)")
    text = path.read_text(encoding="utf-8", errors="replace")
    if len(text) < 2000:
        raise BadInput(f"filler text {path} is too short ({len(text)} characters)")
    model_path = resolve_model(model)
    runs = []
    for h, w in grid(history, window):
        run = run_needle(
            model_path,
            history=h,
            window=w,
            n_facts=facts,
            text=text,
            seed=seed,
            summaries=summaries,
            threads=threads,
            paraphrase=paraphrase,
            evict=evict,
            recent=recent,
            recall=recall == "on",
        )
        runs.append(to_json(run))
        if not as_json:
            click.echo(
                f"history {run.history_tokens:>6}  window {w:>5}  evict {run.evict}  "
                f"facts {run.facts}  in cache {run.retained:.0%}  "
                f"recall {run.recall_hit_rate:.0%}  answers {run.answer_accuracy:.0%}  "
                f"{run.seconds_per_turn:.2f} s/turn  first token {run.first_token_p50} s  "
                f"in summary {run.summary_facts:.0%}  {run.store_bytes / 1e6:.1f} MB  "
                f"(history {run.history_seconds:.0f} s, {run.summaries} summaries at "
                f"{run.seconds_per_summary:.1f} s)"
            )
            sys.stdout.flush()
    if as_json:
        emit_json({"runs": runs})
