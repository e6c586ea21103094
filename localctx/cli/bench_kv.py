"""`localctx bench ppl` and `localctx bench kv`: thin shells over localctx/bench/ppl.py, kv.py."""

from __future__ import annotations

from pathlib import Path

import click

from localctx.bench.kv import DEFAULT_TYPES, run_kv, run_stream
from localctx.bench.ppl import default_text_path, read_text, run_ppl
from localctx.cli.common import emit_json, evict_options, json_option
from localctx.errors import BadInput
from localctx.models.catalogue import resolve_model

_text_option = click.option(
    "--text",
    "text_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Prose to read (default: tests/data/devils-dictionary-excerpt.txt).",
)


def _text(path: Path | None) -> tuple[str, Path]:
    path = path or default_text_path()
    if path is None:
        raise BadInput("give --text FILE (the shipped prose tests/data/ is not here)")
    return read_text(path), path


@click.command()
@click.option("--model", "-m", default=None, help="Catalogue name or .gguf path.")
@_text_option
@click.option("--tokens", type=int, default=3000, show_default=True, help="Tokens to score.")
@click.option("--window", type=int, default=512, show_default=True, help="Window in cells.")
@click.option("--sinks", type=int, default=4, show_default=True, help="Attention sinks kept.")
@click.option("--kv", default="f16", show_default=True, help="KV cache type for K and V.")
@click.option("--full", is_flag=True, help="No window: keep every token (the baseline).")
@click.option("--chunk", type=int, default=64, show_default=True, help="Tokens per decode.")
@click.option("--reprefill", is_flag=True, help="Force the clear + re-prefill fallback.")
@evict_options
@click.option("--threads", type=int, default=None, help="CPU threads (default: all).")
@json_option
def bench_ppl(
    model: str | None,
    text_path: Path | None,
    tokens: int,
    window: int,
    sinks: int,
    kv: str,
    full: bool,
    chunk: int,
    reprefill: bool,
    evict: str,
    recent: int | None,
    threads: int | None,
    as_json: bool,
) -> None:
    """Perplexity through the sink window (or --full); --evict picks what leaves it."""
    model_path = resolve_model(model)
    text, path = _text(text_path)
    result = run_ppl(
        model_path,
        text,
        tokens=tokens,
        window=window,
        sinks=sinks,
        kv=kv,
        full=full,
        chunk=chunk,
        n_threads=threads,
        force_fallback=reprefill,
        source=str(path),
        evict=evict,
        recent=recent,
    )
    if as_json:
        emit_json(result)
        return
    where = (
        "full cache"
        if full
        else f"window {window}, {sinks} sinks, evict {result.evict} ({result.mode})"
    )
    click.echo(
        f"{result.model}: PPL {result.ppl:.3f} over {result.tokens} tokens, {where}, "
        f"KV {result.kv}; peak {result.peak_cells} cells, {result.evictions} evictions, "
        f"{result.seconds:.1f} s"
    )


@click.command()
@click.option("--model", "-m", default=None, help="Catalogue name or .gguf path.")
@_text_option
@click.option("--tokens", type=int, default=1000, show_default=True, help="Tokens evicted.")
@click.option(
    "--types",
    default=",".join(DEFAULT_TYPES),
    show_default=True,
    help="Comma-separated KV types to measure.",
)
@click.option(
    "--stream",
    type=int,
    default=None,
    help="Instead: decode this many tokens through a --window and report the cells used.",
)
@click.option("--window", type=int, default=1024, show_default=True, help="For --stream.")
@click.option("--threads", type=int, default=None, help="CPU threads (default: all).")
@json_option
def bench_kv(
    model: str | None,
    text_path: Path | None,
    tokens: int,
    types: str,
    stream: int | None,
    window: int,
    threads: int | None,
    as_json: bool,
) -> None:
    """KV cache types: bytes/token, prefill/decode speed, eviction vs re-prefill."""
    model_path = resolve_model(model)
    text, _ = _text(text_path)
    names = tuple(t.strip() for t in types.split(",") if t.strip())
    if stream is not None:
        kv = names[0] if names else "f16"
        result = run_stream(
            model_path, text, tokens=stream, window=window, kv=kv, n_threads=threads
        )
        if as_json:
            emit_json({"stream": result})
        else:
            click.echo(
                f"{result['model']}: {result['tokens']} tokens through a {window}-cell window "
                f"({result['mode']}): peak {result['peak_cells']} cells, "
                f"{result['evictions']} evictions, cells used along the way "
                f"{result['cells_used_samples']}, {result['tps']} tok/s"
            )
        return
    report = run_kv(model_path, text, types=names, tokens=tokens, n_threads=threads)
    if as_json:
        emit_json(report)
        return
    click.echo(f"{report['model']} on {report['machine']}; eviction of {tokens} tokens")
    click.echo(
        f"{'type':<7}{'B/token':>9}{'prefill/s':>11}{'decode/s':>10}{'evict ms':>10}"
        f"{'re-prefill ms':>15}{'save ms':>9}{'load ms':>9}{'cold ms':>10}"
    )
    for name, f in report["types"].items():
        evict = "-" if f["evict_ms"] is None else f"{f['evict_ms']:.1f}"
        click.echo(
            f"{name:<7}{f['bytes_per_token']:>9.0f}{f['prefill_tps']:>11.1f}"
            f"{f['decode_tps']:>10.1f}{evict:>10}{f['reprefill_ms']:>15.1f}"
            f"{f['state_save_ms']:>9.1f}{f['state_load_ms']:>9.1f}{f['cold_prefill_ms']:>10.1f}"
        )
