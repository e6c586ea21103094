"""QA sets, the scoring rules of `bench qa` / `bench retrieval`, and a short real run."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from localctx.bench.qaset import Question, Target, finds, first_rank, is_right, load_qa, names
from localctx.errors import BadInput

DATA = Path(__file__).parent / "data"
SETS = sorted(DATA.glob("qa_*.json"))


def q(**fields: object) -> Question:
    base: dict[str, object] = {
        "id": "x",
        "q": "How are redirects followed?",
        "targets": (Target("httpx/_client.py", "Client._send_handling_redirects", (10, 40)),),
        "must": ("302|303", "follow_redirects"),
    }
    base.update(fields)
    return Question(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", SETS, ids=lambda p: p.stem)
def test_every_shipped_set_is_well_formed(path: Path) -> None:
    qa = load_qa(path)
    assert len(qa.questions) >= 15 and len({x.id for x in qa.questions}) == len(qa.questions)
    for question in qa.questions:
        assert question.targets and all(t.lines[0] <= t.lines[1] for t in question.targets)
        for term in question.must:  # parroting the question must not pass
            assert not any(alt.lower() in question.q.lower() for alt in term.split("|"))


def test_the_new_sets_have_answers_and_one_was_never_tuned_on() -> None:
    sets = {p.stem: load_qa(p) for p in SETS}
    assert not sets["qa_httpx"].tuning and sets["qa_httpx"].answerable
    assert sets["qa_werkzeug"].answerable
    for name in ("qa_httpx", "qa_werkzeug"):
        qa = sets[name]
        assert len(qa.questions) >= 30
        assert sum(x.paraphrased for x in qa.questions) >= 22
        assert all(t.lines[1] - t.lines[0] < 80 for x in qa.questions for t in x.targets)
        assert all(is_right(x.answer, x) for x in qa.questions)  # the reference passes


def test_a_span_finds_a_target_only_by_path_and_overlapping_lines() -> None:
    question = q()
    assert finds("httpx/_client.py", 30, 90, question)
    assert finds("httpx/_client.py", 40, 40, question)
    assert not finds("httpx/_client.py", 41, 90, question)
    assert not finds("httpx/_models.py", 10, 40, question)
    assert first_rank([("a.py", 1, 9), ("httpx/_client.py", 1, 10)], question) == 2
    assert first_rank([("httpx/_client.py", 1, 9)], question) is None
    assert names("httpx/_client.py", "Client._send_handling_redirects.inner", question)
    assert not names("httpx/_client.py", "Client._send", question)


@pytest.mark.parametrize(
    ("answer", "right"),
    [
        ("`_send_handling_redirects` follows a 302 when follow_redirects=True.", True),
        ("See httpx/_client.py: with follow_redirects it turns a 303 into GET.", True),
        ("It follows a 302 if follow_redirects is set.", False),  # names no place
        ("In `_send_handling_redirects`, if follow_redirects is set.", False),  # no status
        ("`_send_handling_redirects` follows a 302 redirect.", False),  # no flag
        ("", False),
    ],
)
def test_right_names_the_place_and_holds_every_must_term(answer: str, right: bool) -> None:
    assert is_right(answer, q()) is right


def test_a_bare_common_word_does_not_name_a_method() -> None:
    question = q(targets=(Target("httpx/_client.py", "Client.send", (1, 9)),))
    assert not is_right("It will send a 302 with follow_redirects.", question)
    assert is_right("`send` answers a 302 when follow_redirects is on.", question)
    assert is_right("Client.send answers a 302 when follow_redirects is on.", question)


def test_a_file_that_is_not_a_set_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "qa_bad.json"
    bad.write_text(json.dumps({"sdist": "x", "version": "1", "questions": [{"q": "?"}]}))
    with pytest.raises(BadInput, match="not a QA set"):
        load_qa(bad)
    with pytest.raises(BadInput, match="cannot read"):
        load_qa(tmp_path / "missing.json")


@pytest.mark.real
def test_bench_qa_runs_the_ask_path_on_two_questions(tmp_path: Path) -> None:
    from localctx.bench.qa import run_qa

    try:
        # dense="off": the dense pass over the whole sdist has its own tests (test_dense.py)
        run = run_qa(
            DATA / "qa_httpx.json", limit=2, max_tokens=12, cache=tmp_path / "sdists", dense="off"
        )
    except subprocess.CalledProcessError:
        pytest.skip("PyPI unreachable: cannot fetch the httpx sdist")
    assert run.model == "smollm2-135m" and len(run.rows) == 2
    for row in run.rows:
        assert row.right is not None and row.seconds > 0 and row.prompt_tokens > 0
        assert row.leaks == 0  # each question is a fresh session
        assert all(re.match(r"^[^:]+\.[a-z]+:\d+-\d+", s) for s in row.sources)
    totals = run.totals()
    assert totals["questions"] == 2
    assert totals["saw"] == sum(r.saw for r in run.rows) / 2 and totals["leaks"] == 0


def test_bench_ingest_on_a_generated_tree(tmp_path: Path) -> None:
    """The generator behind the README's 100,000-file figure, and the command that runs it."""
    import subprocess
    import sys

    from localctx.bench.ingest import synthetic_tree

    root = synthetic_tree(tmp_path / "tree", 250)
    assert len(list(root.rglob("*.py"))) == 250
    out = subprocess.run(
        [sys.executable, "-m", "localctx", "bench", "ingest", "--synthetic", "300", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["files_indexed"] == 300 and result["reingest_files_indexed"] == 0
    bad = subprocess.run(
        [sys.executable, "-m", "localctx", "bench", "ingest"], capture_output=True, text=True
    )
    assert bad.returncode == 9 and "PATH or --synthetic" in bad.stderr


@pytest.mark.real
def test_the_digest_figure_comes_from_a_real_prefill_and_restore(
    smollm_path: Path, tmp_path: Path
) -> None:
    from localctx.bench.ingest import digest_figure
    from tests.test_dense import make_repo

    figure = digest_figure(make_repo(tmp_path / "repo"), smollm_path, threads=1)
    assert figure["digest_tokens"] > 10 and figure["state_bytes"] > 0
    assert figure["prefill_seconds"] > 0 and figure["restore_seconds"] > 0
