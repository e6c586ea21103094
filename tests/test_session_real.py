"""The session and memory tiers with the real model (SmolLM2-135M): small windows, few tokens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localctx.engine import EngineSettings, Sampling, load_engine
from localctx.memory.recall import RecallStore
from localctx.memory.snapshots import SnapshotStore
from localctx.session import Session

pytestmark = pytest.mark.real
DATA = Path(__file__).parent / "data" / "devils-dictionary-excerpt.txt"
FACT = "Remember this: the access code for the blue depot is 4471."
SHORT = Sampling(max_tokens=8, temperature=0.0)


def filler(start: int, chars: int = 700) -> str:
    text = DATA.read_text(encoding="utf-8")
    return text[20_000 + start : 20_000 + start + chars]


def open_session(engine: object, home: Path, name: str = "t", window: int = 256) -> Session:
    return Session(
        engine,  # type: ignore[arg-type]
        store=RecallStore(home / "recall.sqlite3"),
        snapshots=SnapshotStore(home / "snaps"),
        name=name,
        window=window,
        summarize_per_turn=0,
    )


def test_summarize_on_evict_over_a_stream_longer_than_the_window(
    smollm: object, tmp_path: Path
) -> None:
    session = open_session(smollm, tmp_path)
    for i in range(4):  # ~700 tokens through a 256-cell window
        session.feed("user", filler(i * 700))
    engine = session.engine
    assert engine.cells_used <= 256
    pending = session.store.pending_segments()  # type: ignore[union-attr]
    assert pending, "the window evicted nothing"
    held = list(engine.tokens)
    probe = engine.tokenize("<|im_start|>assistant\n")
    assert session.summarize_pending(max_segments=1) == 1
    assert engine.tokens == held  # the conversation's cache was put back exactly
    summary = session.store.get(f"s{pending[0].id}")  # type: ignore[union-attr]
    assert summary is not None and summary.summary.strip()
    assert session.running_summary.strip()
    assert len(engine.tokenize(session.running_summary)) <= session.summary_budget
    engine.decode(probe)  # the restored cache still decodes
    assert engine.cells_used == len(held) + len(probe)


def test_recall_puts_a_planted_fact_back_into_context(smollm: object, tmp_path: Path) -> None:
    session = open_session(smollm, tmp_path)
    session.feed("user", FACT)
    for i in range(3):
        session.feed("user", filler(i * 700))
    engine = session.engine
    assert "4471" not in engine.detokenize(engine.tokens)  # evicted from the window
    result = session.ask("What is the access code for the blue depot?", SHORT)
    assert any("4471" in item.text for item in result.recalled)
    assert "4471" in engine.detokenize(engine.tokens)  # the recalled region holds it
    assert engine.cells_used <= 256


def test_session_resume_loads_the_snapshot_only_when_model_and_settings_match(
    smollm_path: Path, tmp_path: Path
) -> None:
    settings = EngineSettings(model_path=smollm_path, n_ctx=512)
    with load_engine(settings) as engine:
        session = open_session(engine, tmp_path, name="work")
        session.ask("Say hello.", SHORT)
        session.close()
        saved = list(engine.tokens)
    with load_engine(settings) as engine:
        resumed = open_session(engine, tmp_path, name="work")
        resumed.prepare_turn()
        assert engine.tokens == saved
        assert [m["role"] for m in resumed.messages] == ["user", "assistant"]
        resumed.ask("Say goodbye.", SHORT)
        assert engine.detokenize(engine.tokens).count("Say hello.") == 1
    other = EngineSettings(model_path=smollm_path, n_ctx=512, type_k="q8_0", type_v="q8_0")
    with load_engine(other) as engine:
        again = open_session(engine, tmp_path, name="work")
        again.prepare_turn()
        assert any("other settings" in n for n in again.notices)
        assert "Say hello." in engine.detokenize(engine.tokens)  # recomputed from messages


CHILD = r"""
import sys
from pathlib import Path
from localctx.engine import EngineSettings, load_engine
from localctx.memory.recall import RecallStore
from localctx.memory.snapshots import SnapshotStore
from localctx.session import Session
home, model, text = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]).read_text()
engine = load_engine(EngineSettings(model_path=model, n_ctx=512))
session = Session(engine, store=RecallStore(home / "recall.sqlite3"),
                  snapshots=SnapshotStore(home / "snaps"), name="k", window=256,
                  summarize_per_turn=0)
for i in range(3):
    session.feed("user", text[20000 + i * 700: 20700 + i * 700])
print(len(session.store.pending_segments()), flush=True)
session.summarize_pending()
print("done", flush=True)
"""


def test_kill_9_during_summarization_loses_nothing_committed(
    smollm_path: Path, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), str(smollm_path), str(DATA)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    assert proc.stdout is not None
    pending = int(proc.stdout.readline())
    assert pending >= 2
    time.sleep(1.0)  # inside the first summary's prefill or generation
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = RecallStore(tmp_path / "recall.sqlite3")  # opens: no corruption
    counts = store.counts()
    assert counts["segments"] == pending  # every committed segment is still there
    assert counts["messages"] == 3
    waiting = counts["summaries_pending"]  # the interrupted one (and later ones), verbatim
    assert 0 <= waiting <= pending  # each segment is summarized or still pending
    if waiting == 0:
        pytest.skip("the child summarized everything before the kill (a very fast machine)")
    with load_engine(EngineSettings(model_path=smollm_path, n_ctx=512)) as engine:
        session = open_session(engine, tmp_path, name="k")
        assert session.summarize_pending(max_segments=1) == 1  # resumes at next start
    assert store.counts()["summaries_pending"] == waiting - 1


def test_a_segment_longer_than_the_context_is_summarized_in_pieces(
    smollm_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import localctx.memory.summarizer as summarizer
    from localctx.engine import EngineSettings, load_engine

    prompts: list[str] = []
    real = summarizer.run_prompt

    def counting(engine: object, messages: list, sampling: Sampling) -> str:
        prompts.append(messages[-1]["content"])
        return real(engine, messages, sampling)  # type: ignore[arg-type]

    monkeypatch.setattr(summarizer, "run_prompt", counting)
    text = filler(0, 3000)  # ~700 tokens into a 512-cell context
    with load_engine(EngineSettings(model_path=smollm_path, n_ctx=512, n_threads=1)) as engine:
        summary = summarizer.summarize_segment(engine, text)
    assert summary.strip() and len(prompts) >= 2
    excerpts = [p.split("Excerpt:\n", 1)[1] for p in prompts]
    assert " ".join(excerpts).split() == text.split()  # every word went to the model
