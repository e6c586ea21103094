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
    help="Ranking variants to compare: lexical, dense, fused (default: all three).",
)
@click.option(
    "--dense",
    type=click.Choice(["auto", "on", "off"]),
    default="on",
    show_default=True,
    help="The dense pass (auto: at most 3,000 new vectors; Django: ~1.7 h on 2 cores).",
)
@click.option(
    "--keep-index",
    is_flag=True,
    help="Use and keep the per-repository index bench qa keeps (vectors embedded once).",
)
@click.option("--model", "-m", default=None, help="The chat model --expand and --rerank use.")
@click.option(
    "--expand", is_flag=True, help="Also search with the model's guess at the code, as ask does."
)
@click.option("--rerank", is_flag=True, help="Also re-rank each ranking's top 20 by the model.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None)
@json_option
def bench_retrieval(
    qa_files: tuple[str, ...],
    repo: str | None,
    variants: tuple[str, ...],
    dense: str,
    keep_index: bool,
    model: str | None,
    expand: bool,
    rerank: bool,
    threads: int | None,
    as_json: bool,
) -> None:
    """Span and path recall@1/5/10, MRR and latency of repository search, per QA set."""
    from localctx.bench.qa import QA_DIR
    from localctx.bench.qaset import load_qa
    from localctx.bench.retrieval import run_retrieval
    from localctx.errors import BadInput
    from localctx.memory.code_search import VARIANTS
    from localctx.runconfig import run_config

    sets = [Path(f) for f in qa_files] or sorted(QA_DIR.glob("qa_*.json"))
    if repo and len(sets) != 1:
        raise BadInput("--repo needs exactly one --qa set")
    for path in sets:
        load_qa(path)
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise BadInput(f"unknown --variant {unknown[0]!r}: pick from {', '.join(VARIANTS)}")
    if expand or rerank:
        run_config(model=model, threads=threads)  # a bad model fails before any ingest
    reports = []
    for path in sets:
        report = run_retrieval(
            path,
            repo=Path(repo) if repo else None,
            variants=variants or ("lexical", "dense", "fused"),
            dense=dense,
            threads=threads,
            keep_index=keep_index,
            model=model,
            expand=expand,
            rerank=rerank,
        )
        reports.append(report)
        if not as_json:
            for r in report["results"]:
                click.echo(
                    f"{report['qa']:<10} {r['variant']:<15} span@1 {r['span']['1']:.0%}"
                    f"  @5 {r['span']['5']:.0%}  @10 {r['span']['10']:.0%}"
                    f"  path@5 {r['path']['5']:.0%}  MRR {r['mrr']:.2f}"
                    f"  paraphrased@5 {r['span_paraphrased']['5']:.0%} of {r['paraphrased']}"
                    f"  p50 {r['query_ms_p50']} ms"
                )
            sys.stdout.flush()
    if as_json:
        emit_json({"sets": reports})
