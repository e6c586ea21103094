"""`localctx bench`: a group; each benchmark lives in its own module (cli/bench_*.py), imported
only when it runs or prints its help (cli/lazy.py)."""

from __future__ import annotations

import click

from localctx.cli.lazy import LazyGroup

BENCHMARKS = {
    "kv": (
        "localctx.cli.bench_kv:bench_kv",
        "KV cache types: bytes/token, prefill/decode speed, eviction vs re-prefill.",
    ),
    "ppl": (
        "localctx.cli.bench_kv:bench_ppl",
        "Perplexity through the sink window (or --full); --evict picks what leaves it.",
    ),
    "needle": (
        "localctx.cli.bench_needle:bench_needle",
        "Needle-in-a-haystack recall through the memory tiers (no flags: the whole grid).",
    ),
    "qa": (
        "localctx.cli.bench_qa:bench_qa",
        "Ask every question of a QA set as `ask --repo` does; report saw / right / latency.",
    ),
    "product": (
        "localctx.cli.bench_product:bench_product",
        "Session turns at 4K-128K cells against plain llama-cpp-python, interleaved.",
    ),
    "retrieval": (
        "localctx.cli.bench_retrieval:bench_retrieval",
        "Span and path recall@1/5/10, MRR and latency of repository search, per QA set.",
    ),
    "ingest": (
        "localctx.cli.bench_ingest:bench_ingest",
        "First ingest, unchanged re-ingest and peak memory, in a fresh store.",
    ),
    "all": (
        "localctx.cli.bench_all:bench_all",
        "The whole suite against raw llama-cpp-python, with a report.",
    ),
    "serve": (
        "localctx.cli.bench_serve:bench_serve",
        "Requests/s, first-token p50/p99, tokens/s, errors, peak RSS; HTTP overhead vs ask.",
    ),
}


@click.group(cls=LazyGroup, lazy=BENCHMARKS)
def bench() -> None:
    """Benchmarks, measured and never asserted: kv ppl needle qa retrieval product serve ..."""
