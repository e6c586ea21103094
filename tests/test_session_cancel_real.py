"""Stopping a prefill on the real model (SmolLM2-135M): llama.cpp's abort callback, the rollback
of a half-read message, resume after it, and Ctrl+C through `localctx ask` in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from localctx.engine import EngineSettings, Sampling, load_engine
from localctx.errors import Cancelled
from localctx.memory.recall import RecallStore
from localctx.memory.snapshots import SnapshotStore
from localctx.progress import Progress
from localctx.session import Session

pytestmark = pytest.mark.real
DATA = Path(__file__).parent / "data" / "devils-dictionary-excerpt.txt"
GREEDY = Sampling(max_tokens=12, temperature=0.0)


def prose(chars: int, start: int = 30_000) -> str:
    return DATA.read_text(encoding="utf-8")[start : start + chars]


class TripAfter(threading.Event):
    """An event that reads as set from its n-th look on. llama.cpp's abort callback looks
    after every graph node, so this trips inside one llama_decode call: no timing involved."""

    def __init__(self, looks: int) -> None:
        super().__init__()
        self.looks_left = looks
        self.looks = 0

    def is_set(self) -> bool:
        self.looks += 1
        self.looks_left -= 1
        return self.looks_left < 0 or super().is_set()


def test_the_abort_callback_stops_a_batch_inside_llama_decode(smollm_path: Path) -> None:
    settings = EngineSettings(model_path=smollm_path, n_ctx=2048, n_batch=512, n_threads=1)
    with load_engine(settings) as engine:
        prompt = engine.tokenize(prose(4000), add_special=True)[:512]  # exactly one batch
        engine.decode(prompt[:16])
        trip = TripAfter(40)
        with engine.cancellable(trip), pytest.raises(Cancelled):
            engine.decode(prompt[16:])
        assert trip.looks > 2  # looked at from inside the batch, not only before it
        assert engine.n_past == 16 and engine.pos_range() == (0, 15)  # the batch left no cells
        engine.decode(prompt[16:])  # the context still works, from where it was
        assert engine.n_past == 512


def open_session(engine: object, home: Path, name: str) -> Session:
    return Session(
        engine,  # type: ignore[arg-type]
        store=RecallStore(home / "recall.sqlite3"),
        snapshots=SnapshotStore(home / "snaps"),
        name=name,
        window=512,
        summarize_per_turn=0,
    )


def test_a_stopped_long_prefill_leaves_cache_and_store_as_before(
    smollm_path: Path, tmp_path: Path
) -> None:
    settings = EngineSettings(model_path=smollm_path, n_ctx=1024, n_batch=256, n_threads=1)
    first, second = "What is a lighthouse?", "Name one colour of the sea."
    with load_engine(settings) as engine:
        control = open_session(engine, tmp_path / "control", "control")
        control.ask(first, GREEDY)
        expected = control.ask(second, GREEDY).answer
        control.close()

        session = open_session(engine, tmp_path / "real", "stopped")
        session.ask(first, GREEDY)
        tokens, positions = engine.tokens, engine.pos_range()
        store = session.store
        assert store is not None
        rows = store.messages(session.session_id)
        cancel = threading.Event()

        def stop_after_two_batches(p: Progress) -> None:
            if p.stage == "reading the prompt" and p.done >= 512:  # past the 512-cell window
                cancel.set()

        with session.supervised(cancel, stop_after_two_batches), pytest.raises(Cancelled):
            session.ask(prose(12_000) + "\n\nSummarize the text above.", GREEDY)
        assert engine.tokens == tokens and engine.pos_range() == positions
        assert store.messages(session.session_id) == rows
        assert store.counts()["segments"] == 0  # what it evicted was put back, not stored
        assert session.ask(second, GREEDY).answer == expected  # as if it never happened
        session.close()

        resumed = open_session(engine, tmp_path / "real", "stopped")
        resumed.prepare_turn()
        contents = [m["content"] for m in resumed.messages]
        assert contents[0] == first and contents[2] == second and len(contents) == 4
        assert "Summarize the text above" not in engine.detokenize(engine.tokens)
        resumed.close()


def test_ctrl_c_during_a_long_prefill_exits_130_without_a_traceback(
    smollm_path: Path, tmp_path: Path
) -> None:
    question = prose(16_000) + "\n\nWhat is the text above about?"
    env = {**os.environ, "LOCALCTX_MODEL": "smollm2-135m"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "localctx", "ask", question, "--ctx", "8192", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    watched = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    # Imports and the model load take ~1.5 s of CPU here; the 4,000-token prefill ~15 s more.
    while watched.cpu_times().user < 3.0 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert err.strip().splitlines()[-1].startswith("localctx: ")
    assert out.strip() == ""  # stopped before it answered
