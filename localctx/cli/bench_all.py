"""`localctx bench all`: the whole suite against raw llama-cpp-python, with a report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from localctx.bench.report import write_outputs
from localctx.bench.suite import default_text_path, run_suite
from localctx.cli.common import emit_json, json_option
from localctx.errors import BadInput

REPO_ROOT = Path(__file__).resolve().parents[2]


@click.command()
@click.option("--quick", is_flag=True, help="512 and 4K; slow parts skipped (~2 min, 2 cores).")
@click.option(
    "--model", "-m", default=None, help="Catalogue name or .gguf path (default: smollm2-135m)."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path(".bench"),
    show_default=True,
    help="Where bench.json, report.md and charts go.",
)
@click.option(
    "--text",
    "text_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Prose to build prompts from (default: tests/data/devils-dictionary-excerpt.txt).",
)
@click.option("--threads", type=int, default=None, help="CPU threads (default: all).")
@json_option
def bench_all(
    quick: bool,
    model: str | None,
    out_dir: Path,
    text_path: Path | None,
    threads: int | None,
    as_json: bool,
) -> None:
    """The whole suite against raw llama-cpp-python, with a report."""
    if threads is not None and threads < 1:
        raise BadInput(f"--threads must be at least 1, got {threads}")
    text_path = text_path or default_text_path(REPO_ROOT)
    if text_path is None:
        raise BadInput("no benchmark text found: pass --text FILE (long English prose)")
    progress = lambda msg: click.echo(f"bench: {msg}", err=True)  # noqa: E731 (stderr only)
    result = write_outputs(
        run_suite(
            quick=quick,
            model=model,
            text_path=text_path,
            threads=threads,
            repo_root=REPO_ROOT,
            progress=progress,
            on_checkpoint=lambda partial: _write_partial(partial, out_dir),
        ),
        out_dir,
    )
    (out_dir / "bench.partial.json").unlink(missing_ok=True)
    if as_json:
        emit_json(result)
        return
    click.echo(Path(result["report_path"]).read_text(encoding="utf-8"))
    click.echo(f"wrote {result['json_path']} and {result['report_path']}")


def _write_partial(result: dict[str, object], out_dir: Path) -> None:
    """The figures so far, in case the run is cut short (replaced by bench.json at the end)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.partial.json").write_text(json.dumps(result, indent=2) + "\n")
