"""`bench qa`: answers about a real repository, measured end to end on the path `ask` runs.

For each question of a set (localctx.bench.qaset) the repository — an sdist from PyPI,
fetched once into the user's cache — is asked through `answer_once`, exactly as
`localctx ask --repo REPO "…"` does: planner settings, the ingested index, recall, the pinned
digest (restored from its KV snapshot after the first question), a fresh ephemeral session per
question. Everything lives in a private data directory, so no answer can borrow another's
memory (and `leaks` counts any recalled conversation item, which must stay 0).

Per question: `saw` (a repository source inserted before the question overlaps the answering
lines), `right` (qaset.is_right), first-token seconds, seconds. Figures are measured, never
asserted; a set without must-have terms reports `saw` only.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from localctx import paths
from localctx.bench.qaset import QaSet, Question, fetch_sdist, finds, is_right, load_qa
from localctx.engine import Sampling, load_engine
from localctx.models.catalogue import Catalogue
from localctx.oneshot import EXPAND_DEFAULT, answer_once
from localctx.runconfig import run_config

QA_DIR = Path(__file__).resolve().parents[2] / "tests" / "data"
HELD_OUT = "qa_httpx.json"  # never tuned on: the default set, and the honest figure


@dataclass
class QaRow:
    id: str
    paraphrased: bool
    saw: bool
    saw_rank: int | None  # 1-based position of the first answering source among those inserted
    right: bool | None  # None: the set has no must-have terms
    first_token_seconds: float | None
    seconds: float
    prompt_tokens: int
    completion_tokens: int
    sources: list[str]
    leaks: int  # recalled conversation items (each question is a fresh session: must be 0)
    answer: str


@dataclass
class QaRun:
    model: str
    qa: str
    tuning: bool
    n_ctx: int
    window: int | None
    type_k: str
    expand: bool = False
    dense: str = "auto"
    rows: list[QaRow] = field(default_factory=list)

    def totals(self) -> dict[str, Any]:
        rows = self.rows
        n = len(rows)
        para = [r for r in rows if r.paraphrased]
        judged = [r for r in rows if r.right is not None]
        ttft = [r.first_token_seconds for r in rows if r.first_token_seconds is not None]
        return {
            "questions": n,
            "saw": _share(sum(r.saw for r in rows), n),
            "right": _share(sum(bool(r.right) for r in judged), len(judged)) if judged else None,
            "paraphrased": len(para),
            "saw_paraphrased": _share(sum(r.saw for r in para), len(para)),
            "right_paraphrased": (
                _share(sum(bool(r.right) for r in para), len(para)) if judged and para else None
            ),
            "first_token_p50": round(statistics.median(ttft), 2) if ttft else None,
            "first_token_max": round(max(ttft), 2) if ttft else None,
            "seconds_mean": round(sum(r.seconds for r in rows) / max(1, n), 2),
            "prompt_tokens_mean": round(sum(r.prompt_tokens for r in rows) / max(1, n)),
            "leaks": sum(r.leaks for r in rows),
        }

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "rows"}
        out["totals"] = self.totals()
        out["rows"] = [asdict(r) for r in self.rows]
        return out


def model_label(model: str | None) -> str:
    """The catalogue name (the default's when None), or a .gguf file's stem."""
    if model is None:
        return Catalogue.load().default.name
    return Path(model).stem if model.endswith(".gguf") else model


def _share(k: int, n: int) -> float:
    return round(k / n, 3) if n else 0.0


def default_sets() -> list[Path]:
    """The held-out set: `bench qa` with no --qa reports the figure nothing was tuned on."""
    return [QA_DIR / HELD_OUT]


@contextmanager
def private_home() -> Iterator[Path]:
    """LOCALCTX_HOME at a fresh directory for the run (models stay where they are)."""
    models = str(paths.models_dir())
    saved = {k: os.environ.get(k) for k in ("LOCALCTX_HOME", "LOCALCTX_MODELS")}
    with tempfile.TemporaryDirectory(prefix="localctx-qa-") as tmp:
        os.environ["LOCALCTX_HOME"] = tmp
        os.environ["LOCALCTX_MODELS"] = models
        try:
            yield Path(tmp)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def score_row(question: Question, answered: Any, judge: bool) -> QaRow:
    """One question's row from what `answer_once` returned (pure but for the record types)."""
    result = answered.result
    code = [item for item in result.recalled if item.source == "archival"]
    rank = next(
        (
            n
            for n, item in enumerate(code, 1)
            if finds(item.path, item.start_line, item.end_line, question)
        ),
        None,
    )
    return QaRow(
        id=question.id,
        paraphrased=question.paraphrased,
        saw=rank is not None,
        saw_rank=rank,
        right=is_right(result.answer, question) if judge else None,
        first_token_seconds=(
            round(answered.first_token_seconds, 3)
            if answered.first_token_seconds is not None
            else None
        ),
        seconds=round(answered.seconds, 3),
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        sources=[item.citation for item in code],
        leaks=sum(1 for item in result.recalled if item.source != "archival"),
        answer=result.answer,
    )


def run_qa(
    qa_path: Path,
    *,
    model: str | None = None,
    limit: int | None = None,
    max_tokens: int = 512,
    threads: int | None = None,
    cache: Path | None = None,
    on_row: Callable[[QaRow], None] | None = None,
    expand: bool | None = None,
    dense: str = "auto",
) -> QaRun:
    """Every question (or the first `limit`) of one set on one model."""
    qa: QaSet = load_qa(qa_path)
    root = fetch_sdist(qa.sdist, qa.version, cache or paths.cache_dir() / "sdists")
    questions = qa.questions[:limit] if limit else qa.questions
    config = run_config(model=model, threads=threads)
    sampling = Sampling(max_tokens=max_tokens, temperature=0.0, seed=0)
    label = model_label(model)
    index = (cache or paths.cache_dir() / "sdists").parent / "bench-index" / f"{root.name}.sqlite3"
    with private_home() as home, load_engine(config.settings) as engine:
        _bring_index(index, home)
        run = QaRun(
            label,
            qa.name,
            qa.tuning,
            engine.n_ctx,
            config.window,
            config.settings.type_k,
            EXPAND_DEFAULT if expand is None else expand,
            dense,
        )
        for question in questions:
            answered = answer_once(
                engine,
                question.q,
                sampling,
                repo=root,
                window=config.window,
                expand=run.expand,
                dense=dense,
            )
            row = score_row(question, answered, qa.answerable)
            run.rows.append(row)
            if on_row is not None:
                on_row(row)
        _keep_index(home, index)
    return run


def _bring_index(index: Path, home: Path) -> None:
    """Start from the repository index (chunks and vectors) a previous run left, so each
    run does not embed the same sdist again. Only the archival store: the conversation
    memory of every run starts empty."""
    if index.is_file():
        db = home / "db"
        db.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(index, db / "archival.sqlite3")


def _keep_index(home: Path, index: Path) -> None:
    src = home / "db" / "archival.sqlite3"
    if src.is_file():
        index.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(src) as conn:  # fold the WAL in, so one file is the whole store
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copyfile(src, index)


def markdown(runs: list[QaRun]) -> str:
    """One table, a row per (model, set)."""
    lines = [
        "| model | set | tuned on | search | questions | saw | right | saw (paraphrased) |"
        " right (paraphrased) | first token p50 | s/question |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        t = run.totals()

        search = f"dense {run.dense}" + (" + expand" if run.expand else "")

        def pct(v: float | None) -> str:
            return "—" if v is None else f"{v:.0%}"

        lines.append(
            f"| {run.model} | {run.qa} | {'yes' if run.tuning else 'no'} | {search} |"
            f" {t['questions']} |"
            f" {pct(t['saw'])} | {pct(t['right'])} | {pct(t['saw_paraphrased'])} |"
            f" {pct(t['right_paraphrased'])} | {t['first_token_p50']} s | {t['seconds_mean']} |"
        )
    return "\n".join(lines)
