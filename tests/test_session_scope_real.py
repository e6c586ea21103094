"""A session remembers its own conversation, not everyone's (real model, SmolLM2-135M).

Two sessions hold conflicting facts; each recalls only its own. A fresh `ask` recalls none of
an earlier session and leaves nothing behind; `--recall all` reaches other sessions and says
where each passage came from; the question being answered never comes back as recalled.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from localctx.engine import Sampling
from localctx.memory.recall import RecallStore
from localctx.memory.snapshots import SnapshotStore
from localctx.session import Session

pytestmark = pytest.mark.real
DATA = Path(__file__).parent / "data" / "devils-dictionary-excerpt.txt"
SHORT = Sampling(max_tokens=6, temperature=0.0)


def filler(start: int, chars: int = 700) -> str:
    return DATA.read_text(encoding="utf-8")[30_000 + start : 30_000 + start + chars]


def session(engine: object, home: Path, name: str, **options: object) -> Session:
    return Session(
        engine,  # type: ignore[arg-type]
        store=RecallStore(home / "recall.sqlite3"),
        snapshots=SnapshotStore(home / "snaps"),
        name=name,
        window=256,
        summarize_per_turn=0,
        **options,  # type: ignore[arg-type]
    )


def plant(s: Session, fact: str) -> None:
    """The fact, then enough filler that the window evicts it into the recall store."""
    s.feed("user", fact)
    for i in range(3):
        s.feed("user", filler(i * 700))
    assert s.eviction_count > 0


def test_two_sessions_with_conflicting_facts_never_see_each_other(
    smollm: object, tmp_path: Path
) -> None:
    a = session(smollm, tmp_path, "alpha")
    plant(a, "Remember this: the vault password is heron-1111.")
    a.close()
    b = session(smollm, tmp_path, "beta")
    plant(b, "Remember this: the vault password is falcon-2222.")
    b.ask("What is the vault password?", SHORT)
    seen_b = " ".join(item.text for item in b.last_recall)
    assert "falcon-2222" in seen_b and "heron" not in seen_b
    b.close()
    a2 = session(smollm, tmp_path, "alpha")
    a2.ask("What is the vault password?", SHORT)
    seen_a = " ".join(item.text for item in a2.last_recall)
    assert "heron-1111" in seen_a and "falcon" not in seen_a
    a2.close()


def test_recall_all_reaches_other_sessions_and_names_them(smollm: object, tmp_path: Path) -> None:
    a = session(smollm, tmp_path, "alpha")
    plant(a, "Remember this: the vault password is heron-1111.")
    a.close()
    c = session(smollm, tmp_path, "gamma", recall_all=True)
    c.ask("What is the vault password?", SHORT)
    hits = [item for item in c.last_recall if "heron-1111" in item.text]
    assert hits and all(item.session == "alpha" for item in hits)
    c.close()


def test_the_question_being_answered_never_comes_back(smollm: object, tmp_path: Path) -> None:
    s = session(smollm, tmp_path, "delta")
    question = "Which colour is the kiosk near the pier?"
    s.ask(question, SHORT)
    for i in range(3):  # push the first question out of the window
        s.feed("user", filler(i * 700))
    s.ask(question, SHORT)  # asked again: the earlier turn may return, this one may not
    assert any("kiosk" in item.text for item in s.last_recall)  # the evicted first turn
    messages = s.store.messages(s.session_id)  # type: ignore[union-attr]
    last_user = max(mid for mid, role, _ in messages if role == "user")
    assert f"m{last_user}" not in {item.id for item in s.last_recall}
    s.close()


def test_a_question_that_matches_nothing_recalls_nothing(smollm: object, tmp_path: Path) -> None:
    s = session(smollm, tmp_path, "epsilon")
    plant(s, "Remember this: the vault password is heron-1111.")
    s.ask("Write a Python function that reverses a string.", SHORT)
    assert s.last_recall == []
    s.close()


def _ask(home: Path, *args: str) -> dict[str, object]:
    env = {"LOCALCTX_HOME": str(home), "PATH": "/usr/bin:/bin"}
    import os

    env["LOCALCTX_MODELS"] = os.environ["LOCALCTX_MODELS"]
    env["LOCALCTX_MODEL"] = "smollm2-135m"
    out = subprocess.run(
        [sys.executable, "-m", "localctx", "ask", *args, "--json", "--max-tokens", "6",
         "--ctx", "2048"],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def test_ask_without_a_session_recalls_nothing_old_and_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    named = _ask(home, "Remember this: the vault password is heron-1111.", "--session", "kept")
    assert named["session"] == "kept"
    with RecallStore(home / "db" / "recall.sqlite3") as store:
        before = store.counts()
    fresh = _ask(home, "What is the vault password?")
    assert fresh["session"] is None
    assert not [r for r in fresh["recalled"] if r["source"] == "recall"]  # type: ignore[union-attr]
    with RecallStore(home / "db" / "recall.sqlite3") as store:
        assert store.counts() == before  # nothing of the fresh question was kept
