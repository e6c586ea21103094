"""`localctx bench`: a group; each benchmark lives in its own module (cli/bench_*.py)."""

from __future__ import annotations

import click

from localctx.cli.bench_all import bench_all
from localctx.cli.bench_ingest import bench_ingest
from localctx.cli.bench_kv import bench_kv, bench_ppl
from localctx.cli.bench_needle import bench_needle
from localctx.cli.bench_product import bench_product
from localctx.cli.bench_qa import bench_qa
from localctx.cli.bench_retrieval import bench_retrieval
from localctx.cli.bench_serve import bench_serve


@click.group()
def bench() -> None:
    """Benchmarks, measured and never asserted: kv ppl needle qa retrieval product serve ..."""


bench.add_command(bench_kv, "kv")
bench.add_command(bench_ppl, "ppl")
bench.add_command(bench_needle, "needle")
bench.add_command(bench_qa, "qa")
bench.add_command(bench_product, "product")
bench.add_command(bench_retrieval, "retrieval")
bench.add_command(bench_ingest, "ingest")
bench.add_command(bench_all, "all")
bench.add_command(bench_serve, "serve")
