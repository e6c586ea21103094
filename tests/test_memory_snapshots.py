"""KV snapshot store: header and checksum, foreign/corrupt files, atomic writes, LRU, real state."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from localctx.memory import snapshots as snapmod
from localctx.memory.snapshots import SnapshotIdentity, SnapshotStore, decode, encode

ID = SnapshotIdentity("ab" * 32, "m", "0.3.36", "f16", "f16", 2048, False, 512)
TOKENS = [1, 9690, 198, 42, 7]


def test_round_trip_and_private_files(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snaps")
    key = store.save(ID, TOKENS, b"\x01\x02state", {"kind": "session", "message_ids": [3]})
    assert key == ID.key(TOKENS)
    assert stat.S_IMODE(store.path(key).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "snaps").stat().st_mode) == 0o700
    snap = store.find(ID, TOKENS)
    assert snap is not None
    assert (snap.tokens, snap.data, snap.meta["message_ids"]) == (TOKENS, b"\x01\x02state", [3])
    assert store.notices == []


def test_key_depends_on_model_settings_and_tokens() -> None:
    keys = {
        ID.key(TOKENS),
        ID.key([*TOKENS, 1]),
        replace(ID, model_sha256="cd" * 32).key(TOKENS),
        replace(ID, type_k="q8_0").key(TOKENS),
        replace(ID, n_ctx=4096).key(TOKENS),
        replace(ID, window=None).key(TOKENS),
        replace(ID, llama_cpp="0.3.37").key(TOKENS),
    }
    assert len(keys) == 7


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[: len(b) - 3], "checksum"),
        (lambda b: b[:20], "truncated"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), "checksum"),
        (lambda b: b"GGUF" + b[4:], "not a localctx snapshot"),
        (lambda b: os.urandom(64), "not a localctx snapshot"),
        (lambda b: b"", "not a localctx snapshot"),
        (lambda b: b[:8] + (99).to_bytes(4, "little") + b[12:], "format 99"),
    ],
    ids=["truncated-tail", "truncated-head", "flipped", "foreign-magic", "random", "empty", "ver"],
)
def test_corrupt_truncated_or_foreign_file_is_ignored_with_a_notice(
    tmp_path: Path, mutate: object, reason: str
) -> None:
    store = SnapshotStore(tmp_path)
    key = store.save(ID, TOKENS, b"payload" * 100)
    assert key is not None
    path = store.path(key)
    path.write_bytes(mutate(path.read_bytes()))  # type: ignore[operator]
    assert store.load(key, ID) is None
    assert len(store.notices) == 1 and reason in store.notices[0]
    assert "recomputing" in store.notices[0]


def test_snapshot_of_other_settings_is_never_loaded(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    key = store.save(ID, TOKENS, b"state")
    assert key is not None
    other = replace(ID, type_k="q8_0", type_v="q8_0")
    assert store.load(key, other) is None
    assert "other settings (type_k, type_v)" in store.notices[0]
    assert store.find(other, TOKENS) is None  # its own key: simply absent


def test_decode_is_pure_and_checks_identity() -> None:
    blob = encode(ID, TOKENS, b"xyz", {"a": 1})
    assert decode(blob, ID) == (TOKENS, b"xyz", {"a": 1})
    assert decode(blob, replace(ID, model_sha256="00" * 32)) == (
        "made under other settings (model_sha256)"
    )


def test_disk_full_mid_write_keeps_the_previous_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SnapshotStore(tmp_path)
    key = store.save(ID, TOKENS, b"old state")
    real_write = os.write
    calls = {"n": 0}

    def full_disk(fd: int, data: object) -> int:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data)[:10])  # type: ignore[call-overload]

    monkeypatch.setattr(snapmod.os, "write", full_disk)
    assert store.save(ID, TOKENS, b"new state" * 1000) is None
    monkeypatch.undo()
    assert "No space left on device" in store.notices[-1]
    snap = store.load(key, ID)  # type: ignore[arg-type]
    assert snap is not None and snap.data == b"old state"
    assert list(tmp_path.glob(".*.tmp")) == []


def test_size_cap_evicts_least_recently_used(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, cap_bytes=3000)  # two ~1.3 KB files fit, three do not
    keys = []
    for i in range(3):
        keys.append(store.save(ID, [i], b"x" * 1000))
        os.utime(store.path(keys[-1]), (time.time() - 100 + i, time.time() - 100 + i))
    assert store.path(keys[0]).exists() is False  # oldest went when the third arrived
    assert store.load(keys[1], ID) is not None  # a load refreshes its age
    store.save(ID, [9], b"x" * 1000)
    assert store.path(keys[1]).exists() and not store.path(keys[2]).exists()


def test_forget_where_deletes_snapshots_holding_an_item(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    a = store.save(ID, [1], b"a", {"message_ids": [1, 2]})
    b = store.save(ID, [2], b"b", {"message_ids": [3]})
    assert store.forget_where(lambda meta: 2 in meta.get("message_ids", [])) == [a]
    assert store.path(b).exists()  # type: ignore[arg-type]


CHILD = r"""
import sys, time
from pathlib import Path
from localctx.memory.snapshots import SnapshotIdentity, SnapshotStore
ident = SnapshotIdentity("ab" * 32, "m", "0.3.36", "f16", "f16", 2048, False, 512)
store = SnapshotStore(Path(sys.argv[1]))
store.save(ident, [1, 2, 3], b"committed" * 1000)
print("committed", flush=True)
i = 0
while True:  # rewrite the same key with a large payload until killed
    i += 1
    store.save(ident, [1, 2, 3], bytes([i % 256]) * 30_000_000)
"""


def test_kill_9_while_writing_a_snapshot_loses_nothing_committed(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "committed"
    deadline = time.time() + 30
    while not list(tmp_path.glob(".*.tmp")) and time.time() < deadline:
        time.sleep(0.005)  # kill while a temp file is being written
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = SnapshotStore(tmp_path)  # sweeps the dead writer's temp file
    snap = store.find(ID, [1, 2, 3])
    assert snap is not None, store.notices
    assert snap.data == b"committed" * 1000 or len(set(snap.data)) == 1
    assert list(tmp_path.glob(".*.tmp")) == []


@pytest.mark.real
def test_restored_state_gives_the_same_next_token_logits_as_a_cold_prefill(
    smollm: object, tmp_path: Path
) -> None:
    from localctx.context.pinned import identity_for

    engine = smollm  # type: ignore[assignment]
    prompt = engine.tokenize(  # type: ignore[attr-defined]
        "<|im_start|>user\nName three colours of the sea at dusk.<|im_end|>\n", add_special=True
    )
    probe = engine.tokenize("<|im_start|>assistant\n")  # type: ignore[attr-defined]
    engine.decode(prompt)  # type: ignore[attr-defined]
    store = SnapshotStore(tmp_path)
    ident = identity_for(engine, None)  # type: ignore[arg-type]
    key = store.save(ident, engine.tokens, engine.state_get())  # type: ignore[attr-defined]
    assert key is not None

    engine.kv_clear()  # type: ignore[attr-defined]
    engine.decode(prompt + probe)  # type: ignore[attr-defined]
    cold = engine.last_logits()  # type: ignore[attr-defined]

    engine.kv_clear()  # type: ignore[attr-defined]
    snap = store.find(ident, prompt)
    assert snap is not None
    engine.state_set(snap.data, snap.tokens)  # type: ignore[attr-defined]
    engine.decode(probe)  # type: ignore[attr-defined]
    warm = engine.last_logits()  # type: ignore[attr-defined]
    assert int(np.argmax(warm)) == int(np.argmax(cold))
    np.testing.assert_allclose(warm, cold, rtol=0, atol=1e-3)


@pytest.mark.real
def test_snapshot_from_other_kv_settings_is_refused_for_a_real_engine(
    smollm_path: Path, tmp_path: Path
) -> None:
    from localctx.context.pinned import identity_for
    from localctx.engine import EngineSettings, load_engine

    store = SnapshotStore(tmp_path)
    with load_engine(EngineSettings(model_path=smollm_path, n_ctx=512)) as f16:
        f16.decode(f16.tokenize("hello there", add_special=True))
        key = store.save(identity_for(f16, None), f16.tokens, f16.state_get())
    q8 = EngineSettings(model_path=smollm_path, n_ctx=512, type_k="q8_0", type_v="q8_0")
    with load_engine(q8) as engine:
        assert store.load(key, identity_for(engine, None)) is None  # type: ignore[arg-type]
        assert "type_k, type_v" in store.notices[-1]


def test_save_and_load_hold_the_state_about_once(tmp_path: Path) -> None:
    """A 1 GiB state must not cost 2-3 GiB to save or load: saving writes the header and the
    state one after the other, loading reads into one buffer the state is a view of."""
    import tracemalloc

    state = os.urandom(32 * 2**20)
    store = SnapshotStore(tmp_path / "snaps")
    tracemalloc.start()
    key = store.save(ID, TOKENS, state, {})
    _, save_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    snap = store.load(key, ID) if key else None
    _, load_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert snap is not None and bytes(snap.data) == state
    assert save_peak < 0.2 * len(state)  # no concatenated copy
    assert load_peak < 1.2 * len(state)  # the file's buffer, nothing more
