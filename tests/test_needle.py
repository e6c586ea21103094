"""`localctx bench needle`: planting, the grid, bad input, and one small real run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from localctx.bench.needle import conversation, grid, plant_facts, run_needle
from localctx.cli import main
from localctx.errors import BadInput, Exit

DATA = Path(__file__).parent / "data" / "devils-dictionary-excerpt.txt"


def test_facts_are_distinct_and_at_least_ten_windows_out_when_possible() -> None:
    facts = plant_facts(20, 32768, 1024, random.Random(1))
    assert len({f.subject for f in facts}) == 20 and len({f.value for f in facts}) == 20
    assert all(32768 - f.depth >= 10 * 1024 for f in facts)
    short = plant_facts(5, 4096, 512, random.Random(1))  # 10 windows do not fit in 4K
    assert all(f.depth < 2048 for f in short)


def test_conversation_plants_every_fact_once_in_depth_order() -> None:
    facts = plant_facts(5, 8192, 512, random.Random(2))
    messages = conversation(DATA.read_text(), 8192, facts)
    planted = [m for m in messages if m.startswith("Remember this:")]
    assert planted == [f.statement for f in facts]
    assert sum(len(m) for m in messages) > 8192 * 3  # roughly the history asked for


def test_grid_flags_pin_their_axis() -> None:
    assert len(grid(None, None)) == 6
    assert grid(4096, 512) == [(4096, 512)]
    assert grid(None, 512) == [(8192, 512), (32768, 512), (131072, 512)]


def test_bad_input_is_one_line() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["bench", "needle", "--text", "/nonexistent.txt", "--json"])
    assert result.exit_code == int(Exit.BAD_INPUT)
    assert "filler text not found" in result.output
    result = runner.invoke(
        main, ["bench", "needle", "--history", "600", "--window", "512", "--text", str(DATA)]
    )
    assert result.exit_code == int(Exit.BAD_INPUT)
    assert "at least twice the window" in result.output
    with pytest.raises(BadInput):
        plant_facts(500, 8192, 512, random.Random(0))


@pytest.mark.real
def test_small_real_run_recalls_every_planted_fact(smollm_path: Path) -> None:
    run = run_needle(
        smollm_path, history=1024, window=256, n_facts=2, text=DATA.read_text(), summaries=0
    )
    assert run.facts == 2 and run.evictions > 0
    assert run.recall_hit_rate == 1.0  # BM25 over the verbatim store: deterministic
    assert run.answer_accuracy == sum(a["correct"] for a in run.answers) / run.facts
    # The tokens fed are counted (template included), not copied from the request.
    assert run.requested_history == 1024 and 0.8 * 1024 <= run.history_tokens <= 1.3 * 1024
    assert run.first_token_p50 is not None and run.first_token_p50 > 0
    assert run.store_bytes > 0 and run.seconds_per_turn > 0
    payload = json.loads(json.dumps({"runs": [run.__dict__]}))
    assert {"history_tokens", "window", "facts", "recall_hit_rate", "answer_accuracy",
            "seconds_per_turn", "store_bytes"} <= set(payload["runs"][0])  # fmt: skip


@pytest.mark.real
def test_paraphrased_questions_share_no_template_word_and_summaries_are_scored(
    smollm_path: Path,
) -> None:
    run = run_needle(
        smollm_path, history=1024, window=256, n_facts=2, text=DATA.read_text(), summaries=2,
        paraphrase=True,
    )  # fmt: skip
    assert run.paraphrase and run.summaries == 2
    assert all("access code" not in a["question"] for a in run.answers)
    assert run.summary_facts == sum(a["in_summary"] for a in run.answers) / run.facts
