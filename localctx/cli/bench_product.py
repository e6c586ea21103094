"""`localctx bench product`: the path users run (Session + window + gauge) vs raw llama.cpp."""

from __future__ import annotations

import click

from localctx.cli.common import emit_json, json_option


@click.command()
@click.option("--model", "-m", default=None, help="Catalogue name or .gguf path.")
@click.option(
    "--ctx",
    "sizes",
    multiple=True,
    type=click.IntRange(1024, 1 << 20),
    help="Cells to fill (repeat; default 4096 and 32768).",
)
@click.option(
    "--decode",
    "decode_tokens",
    type=click.IntRange(4, 4096),
    default=64,
    show_default=True,
    help="Tokens per half of the interleaved decode.",
)
@click.option("--force", is_flag=True, help="Allow a context above the trained one (RoPE scaling).")
@click.option("--threads", type=click.IntRange(1, 1024), default=None)
@json_option
def bench_product(
    model: str | None,
    sizes: tuple[int, ...],
    decode_tokens: int,
    force: bool,
    threads: int | None,
    as_json: bool,
) -> None:
    """Session turns at 4K-128K cells against plain llama-cpp-python, interleaved."""
    from localctx.bench.product import compare_product
    from localctx.bench.settings import bench_settings
    from localctx.bench.texts import default_prose
    from localctx.errors import BadInput
    from localctx.models.catalogue import resolve_model

    prose = default_prose()
    if prose is None:
        raise BadInput("the shipped prose (tests/data) is not here: run from a checkout")
    text = prose.read_text(encoding="utf-8")
    path = resolve_model(model)
    points = []
    for n_ctx in sizes or (4096, 32768):
        settings = bench_settings(model_path=path, n_ctx=n_ctx, n_threads=threads, force=force)
        say = None if as_json else (lambda msg: click.echo(f"bench: {msg}", err=True))
        point = compare_product(settings, text, decode_tokens=decode_tokens, progress=say)
        points.append(point.to_json())
        if not as_json:
            click.echo(
                f"{point.model} @ {point.cells} cells: prefill {point.prefill_ratio:.3f}"
                f" ({point.prefill_pairs} pairs), decode {point.decode_ratio:.3f} with the gauge"
                f" / {point.decode_ratio_no_gauge:.3f} without, gauge cost"
                f" {point.gauge_cost:+.1%}, same tokens: {point.outputs_match}"
            )
    if as_json:
        emit_json({"points": points})
