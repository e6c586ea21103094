"""`localctx bench serve`: clients x turns against a real `localctx serve`, then its overhead."""

from __future__ import annotations

import click

from localctx.cli.common import emit_json, json_option


@click.command()
@click.option("--clients", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option("--turns", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--model", "-m", default=None, help="Catalogue name or .gguf path.")
@click.option("--max-tokens", type=click.IntRange(1, 4096), default=32, show_default=True)
@click.option("--max-queue", type=click.IntRange(1), default=32, show_default=True)
@click.option("--threads", type=click.IntRange(1, 1024), default=None)
@click.option("--timeout", type=click.FloatRange(1), default=600.0, show_default=True,
              help="No new request after this many seconds.")  # fmt: skip
@click.option("--rounds", type=click.IntRange(0, 20), default=3, show_default=True,
              help="Interleaved ask-vs-HTTP runs for the overhead (0: skip).")  # fmt: skip
@click.option("--overhead-tokens", type=click.IntRange(8, 4096), default=128, show_default=True)
@json_option
def bench_serve(
    clients: int,
    turns: int,
    model: str | None,
    max_tokens: int,
    max_queue: int,
    threads: int | None,
    timeout: float,
    rounds: int,
    overhead_tokens: int,
    as_json: bool,
) -> None:
    """Requests/s, first-token p50/p99, tokens/s, errors, peak RSS; HTTP overhead vs ask."""
    from localctx.bench.serve import run_serve_bench

    run = run_serve_bench(
        model=model,
        clients=clients,
        turns=turns,
        max_tokens=max_tokens,
        max_queue=max_queue,
        threads=threads,
        timeout=timeout,
        overhead_rounds=rounds,
        overhead_tokens=overhead_tokens,
    )
    if as_json:
        emit_json(run.to_json())
        return
    click.echo(
        f"{run.model}: {run.clients} clients x {run.turns} turns, {run.requests} requests in "
        f"{run.seconds:.1f} s: {run.requests_per_second:.2f} req/s, first token p50 "
        f"{run.ttft_p50_seconds} s / p99 {run.ttft_p99_seconds} s, {run.tokens_per_second:.1f} "
        f"tok/s, {run.errors} errors, server peak RSS {run.server_peak_rss_bytes / 2**20:.0f} MiB"
    )
    o = run.overhead
    if o:
        click.echo(
            f"one client, {o['completion_tokens']} tokens: ask {o['ask_decode_tps']} tok/s, "
            f"HTTP {o['http_decode_tps']} tok/s (overhead {o['overhead']:.1%}; the transport "
            f"itself {o['transport_overhead']:.1%})"
        )
