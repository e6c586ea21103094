"""`localctx bench retrieval`: recall@k of code search on real repositories' QA sets."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from localctx.cli.common import emit_json, json_option


@click.command()
@click.option(
    "--qa",
    "qa_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A QA set; repeat for several (default: every tests/data/qa_*.json).",
)
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Search this checkout instead of the set's sdist (one --qa only).",
)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    help="Ranking variants to compare (default: the shipped ranking).",
)
@json_option
def bench_retrieval(
    qa_files: tuple[str, ...],
    repo: str | None,
    variants: tuple[str, ...],
    dense: bool,
    threads: int | None,
    as_json: bool,
) -> None:
    """Span and path recall@1/5/10, MRR and latency of repository search, per QA set."""
    from localctx.bench.qa import QA_DIR
    from localctx.bench.qaset import load_qa
    from localctx.bench.retrieval import run_retrieval
    from localctx.errors import BadInput

    sets = [Path(f) for f in qa_files] or sorted(QA_DIR.glob("qa_*.json"))
    if repo and len(sets) != 1:
        raise BadInput("--repo needs exactly one --qa set")
    for path in sets:
        load_qa(path)
    reports = []
    for path in sets:
        report = run_retrieval(
            path,
            repo=Path(repo) if repo else None,
            variants=variants or ("lexical", "dense", "fused"),
            dense="on" if dense else "off",
            threads=threads,
        )
        reports.append(report)
        if not as_json:
            for r in report["results"]:
                click.echo(
                    f"{report['qa']:<10} {r['variant']:<12} span@1 {r['span']['1']:.0%}"
                    f"  @5 {r['span']['5']:.0%}  @10 {r['span']['10']:.0%}"
                    f"  path@5 {r['path']['5']:.0%}  MRR {r['mrr']:.2f}"
                    f"  paraphrased@5 {r['span_paraphrased']['5']:.0%} of {r['paraphrased']}"
                    f"  p50 {r['query_ms_p50']} ms"
                )
            sys.stdout.flush()
    if as_json:
        emit_json({"sets": reports})
