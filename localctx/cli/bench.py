"""`localctx bench`: a group; each benchmark lives in its own module (cli/bench_*.py)."""

from __future__ import annotations

import click

from localctx.cli.bench_all import bench_all
from localctx.cli.bench_kv import bench_kv, bench_ppl
from localctx.cli.bench_needle import bench_needle


@click.group()
def bench() -> None:
    """Benchmarks: kv, ppl, needle, all (speed and memory are measured, never asserted)."""


bench.add_command(bench_kv, "kv")
bench.add_command(bench_ppl, "ppl")
bench.add_command(bench_needle, "needle")
bench.add_command(bench_all, "all")
