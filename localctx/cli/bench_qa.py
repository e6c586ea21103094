"""`localctx bench qa`: answers about a real repository, right or wrong, per model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from localctx.cli.common import emit_json, json_option


@click.command()
@click.option(
    "--model",
    "-m",
    "models",
    multiple=True,
    help="Catalogue name or .gguf path; repeat for several (default: the default).",
)
@click.option(
    "--qa",
    "qa_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A QA set (tests/data/qa_*.json); repeat for several (default: the "
    "held-out set, qa_httpx.json).",
)
@click.option("--limit", type=click.IntRange(1), default=None, help="First N questions only.")
@click.option("--max-tokens", type=click.IntRange(1), default=512, show_default=True)
@click.option("--threads", type=click.IntRange(1, 1024), default=None)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Also write qa.json and qa.md here.",
)
@click.option(
    "--expand/--no-expand",
    default=None,
    help="Search with the model's guess at the code (default: as ask does).",
)
@click.option(
    "--dense",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="The repository's dense pass, as for ask.",
)
@json_option
def bench_qa(
    models: tuple[str, ...],
    qa_files: tuple[str, ...],
    limit: int | None,
    max_tokens: int,
    threads: int | None,
    out: str | None,
    expand: bool | None,
    dense: str,
    as_json: bool,
) -> None:
    """Ask every question of a QA set as `ask --repo` does; report saw / right / latency."""
    from localctx.bench.qa import default_sets, markdown, run_qa
    from localctx.bench.qaset import load_qa

    sets = [Path(f) for f in qa_files] or default_sets()
    for path in sets:
        load_qa(path)  # a bad file fails before any model loads
    runs = []
    for model in models or (None,):
        for path in sets:
            if not as_json:
                click.echo(f"== {model or 'default model'} on {path.name}", err=True)

            def show(row: object) -> None:
                if not as_json:
                    r = row.__dict__
                    mark = "right" if r["right"] else ("wrong" if r["right"] is False else "")
                    click.echo(
                        f"{r['id']:<14} saw {'yes' if r['saw'] else 'no ':<3} {mark:<5}"
                        f" ttft {r['first_token_seconds']} s  {r['seconds']} s",
                        err=True,
                    )

            runs.append(
                run_qa(
                    path,
                    model=model,
                    limit=limit,
                    max_tokens=max_tokens,
                    threads=threads,
                    on_row=show,
                    expand=expand,
                    dense=dense,
                )
            )
    payload = {"runs": [run.to_json() for run in runs]}
    table = markdown(runs)
    if out:
        target = Path(out)
        target.mkdir(parents=True, exist_ok=True)
        (target / "qa.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        (target / "qa.md").write_text(table + "\n", encoding="utf-8")
    if as_json:
        emit_json(payload)
    else:
        sys.stdout.write(table + "\n")
