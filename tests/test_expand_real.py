"""Query expansion (memory.expand) with the real model: the guess is written on a lent cache
that comes back exactly, and it feeds the repository search only (never the model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from localctx.engine import Sampling
from localctx.ingest import attach
from localctx.memory.archival import ArchivalStore
from localctx.memory.expand import expansion_messages
from localctx.memory.recall import RecallStore
from localctx.memory.snapshots import SnapshotStore
from localctx.session import Session
from tests.test_dense import make_repo

pytestmark = pytest.mark.real


def test_the_prompt_names_the_project_and_asks_for_code() -> None:
    (message,) = expansion_messages("How are refunds issued?", "shop")
    assert "project shop" in message["content"] and "Only code." in message["content"]
    assert message["content"].endswith("Question: How are refunds issued?")


def test_expansion_searches_with_the_guess_and_restores_the_cache(
    smollm: object, tmp_path: Path
) -> None:
    repo = attach(make_repo(tmp_path / "repo"), store=ArchivalStore.open(tmp_path / "a.db"))
    session = Session(
        smollm,  # type: ignore[arg-type]
        store=RecallStore(tmp_path / "recall.sqlite3"),
        snapshots=SnapshotStore(tmp_path / "snaps"),
        name="x",
        window=1024,
        repo=repo,
        owns_repo=True,
        expand=True,
        summarize_per_turn=0,
    )
    session.feed("user", "We are looking at the bank code today.")
    held = list(session.engine.tokens)
    query = session._code_query("Where are statements printed?")
    assert session.last_expansion and query.endswith(session.last_expansion)
    assert session.engine.tokens == held  # the conversation's cache came back exactly
    result = session.ask("Where are statements printed?", Sampling(max_tokens=8))
    assert session.last_expansion  # recomputed for this turn
    assert all(item.text != session.last_expansion for item in result.recalled)  # never shown
    session.close()
