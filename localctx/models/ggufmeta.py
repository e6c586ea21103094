"""Read what a GGUF says about itself, without loading weights (the `gguf` package).

Used by `models info` and by the planner's byte math. Validation happens here so that a file
that is not GGUF, or was cut short by an interrupted copy, gives one clear error before
llama.cpp ever sees it (llama.cpp would abort or print pages of log).
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from localctx.errors import BadModelFile, ModelNotFound

GGUF_MAGIC = b"GGUF"

# llama.cpp hard-codes the sliding-window layer pattern for some architectures when the GGUF
# does not carry it: every n-th layer is global, the others use the window.
_SWA_PATTERN_DEFAULTS = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "llama4": 4}


_LAYER = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the header's table (the planner splits weights by layer with these)."""

    name: str
    shape: tuple[int, ...]
    n_bytes: int
    offset: int  # from the start of the data section

    @property
    def layer(self) -> int | None:
        """The repeating layer (block) this tensor belongs to; None for embeddings/output."""
        m = _LAYER.match(self.name)
        return int(m.group(1)) if m else None


@dataclass(frozen=True)
class GgufInfo:
    """The metadata localctx needs; every field has a JSON-friendly type."""

    path: str
    size_bytes: int
    architecture: str
    name: str
    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    head_count_kv_per_layer: list[int]
    key_length: int
    value_length: int
    context_length: int
    sliding_window: int
    sliding_window_pattern: int
    swa_layers: list[bool]
    rope_freq_base: float
    rope_scaling_type: str
    rope_dimension_count: int
    file_type: str
    vocab_size: int
    has_chat_template: bool
    tensor_bytes: int
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    tensors: tuple[TensorEntry, ...] = field(repr=False, default=())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("raw")
        data.pop("tensors")
        return data


def read_gguf(path: str | Path) -> GgufInfo:
    """Parse and validate a GGUF file. Raises BadModelFile/ModelNotFound with one line.

    A streaming parse of the header, not `gguf.GGUFReader`: the reader materialises every
    array (2.4 s for SmolLM2's 49K-token vocabulary here); this seeks over them (80 ms for
    Gemma-3's 262K-token vocabulary) and is cached per file version. Types and block sizes
    still come from the `gguf` package. The tensor table is kept for the planner.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelNotFound(f"model file not found: {path}")
    stat = path.stat()
    # One parse per file version: ask/chat start reads the header in the run config, the
    # planner and the engine; the file's size and mtime tell when it changed.
    return _read_gguf(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _read_gguf(path: Path, size: int, _mtime_ns: int) -> GgufInfo:
    try:
        with path.open("rb") as fh:
            raw, tensors, data_start = _parse(fh)
    except _NotGguf as exc:
        raise BadModelFile(f"{path} is not a GGUF file ({exc})") from None
    except _DAMAGE as exc:
        raise BadModelFile(f"{path} is not a readable GGUF (truncated or corrupt): {exc}") from None
    tensor_end = data_start + max((t.offset + t.n_bytes for t in tensors), default=0)
    if tensor_end > size:
        raise BadModelFile(
            f"{path} is truncated: tensors end at byte {tensor_end:,} but the file has {size:,}"
        )
    vocab = raw.pop("\x00vocab_size", 0)
    try:
        return _info(path, size, raw, tuple(tensors), int(vocab))
    except _DAMAGE as exc:  # metadata of the wrong type or shape (random bytes in a header)
        raise BadModelFile(f"{path} has unusable metadata (corrupt?): {exc}") from None


# What random bytes in a header can raise while it is parsed (all mean: not a usable GGUF).
_DAMAGE = (
    struct.error, EOFError, ValueError, UnicodeDecodeError, MemoryError, OverflowError,
    OSError, KeyError, TypeError, ZeroDivisionError, IndexError,
)  # fmt: skip


class _NotGguf(Exception):
    pass


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip
_MAX_KEEP = 64  # arrays longer than this (token lists, merges) are skipped, not kept


def _read(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise EOFError(f"file ends {n - len(data)} bytes early")
    return data


def _skip(fh: BinaryIO, n: int) -> None:
    """Seek over n bytes that must lie inside the file: a random length in a damaged header
    would otherwise seek to a bogus offset (EINVAL) or silently past the end."""
    here = fh.tell()
    if here + n > os.fstat(fh.fileno()).st_size:
        raise EOFError(f"an array of {n:,} bytes at offset {here:,} runs past the end")
    fh.seek(n, 1)


def _unpack(fh: BinaryIO, fmt: str) -> Any:
    return struct.unpack(fmt, _read(fh, struct.calcsize(fmt)))[0]


def _string(fh: BinaryIO) -> str:
    n = _unpack(fh, "<Q")
    if n > 1 << 30:
        raise ValueError(f"string of {n} bytes")
    return _read(fh, n).decode("utf-8", errors="replace")


def _value_of(fh: BinaryIO, vtype: int) -> Any:
    if vtype == 8:
        return _string(fh)
    if vtype in _SCALARS:
        return _unpack(fh, _SCALARS[vtype])
    if vtype == 9:
        etype, count = _unpack(fh, "<I"), _unpack(fh, "<Q")
        if count > _MAX_KEEP:
            if etype in _SCALARS:
                _skip(fh, count * struct.calcsize(_SCALARS[etype]))
            elif etype == 8:  # token lists: seek over each string, never decode it
                for _ in range(count):
                    _skip(fh, _unpack(fh, "<Q"))
            else:
                for _ in range(count):
                    _value_of(fh, etype)
            return _Skipped(count)
        return [_value_of(fh, etype) for _ in range(count)]
    raise ValueError(f"unknown GGUF value type {vtype}")


@dataclass(frozen=True)
class _Skipped:
    count: int

    def __str__(self) -> str:
        return f"<array of {self.count}>"


def _parse(fh: BinaryIO) -> tuple[dict[str, Any], list[TensorEntry], int]:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise _NotGguf(f"magic {magic!r}, expected b'GGUF'")
    version = _unpack(fh, "<I")
    if version not in (2, 3):
        raise _NotGguf(f"unsupported GGUF version {version}")
    n_tensors, n_kv = _unpack(fh, "<Q"), _unpack(fh, "<Q")
    raw: dict[str, Any] = {}
    for _ in range(n_kv):
        key = _string(fh)
        value = _value_of(fh, _unpack(fh, "<I"))
        if key == "tokenizer.ggml.tokens":
            raw["\x00vocab_size"] = value.count if isinstance(value, _Skipped) else len(value)
        raw[key] = str(value) if isinstance(value, _Skipped) else value
    tensors = []
    for _ in range(n_tensors):
        name = _string(fh)
        n_dims = _unpack(fh, "<I")
        dims = tuple(_unpack(fh, "<Q") for _ in range(n_dims))
        ggml_type, offset = _unpack(fh, "<I"), _unpack(fh, "<Q")
        block, type_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        n_elements = 1
        for d in dims:
            n_elements *= d
        tensors.append(TensorEntry(name, dims, n_elements // block * type_bytes, offset))
    align = int(raw.get("general.alignment", 32))
    here = fh.tell()
    return raw, tensors, here + (-here % align)


def _info(
    path: Path, size: int, raw: dict[str, Any], tensors: tuple[TensorEntry, ...], vocab: int
) -> GgufInfo:
    arch = raw.get("general.architecture")
    if not isinstance(arch, str):
        raise BadModelFile(f"{path}: missing metadata key general.architecture")

    def key(name: str, default: Any = None, *, required: bool = False) -> Any:
        full = f"{arch}.{name}"
        if full not in raw:
            if required:
                raise BadModelFile(f"{path}: missing metadata key {full}")
            return default
        return raw[full]

    n_layer = int(key("block_count", required=True))
    n_embd = int(key("embedding_length", required=True))
    n_head = _scalar(key("attention.head_count", required=True))
    kv_raw = key("attention.head_count_kv", n_head)
    kv_per_layer = [int(x) for x in kv_raw] if isinstance(kv_raw, list) else [int(kv_raw)] * n_layer
    head_dim = int(key("attention.key_length", n_embd // n_head if n_head else 0))
    window = int(key("attention.sliding_window", 0) or 0)
    pattern = key("attention.sliding_window_pattern")
    swa_layers = _swa_layers(arch, n_layer, window, pattern)
    pattern_n = pattern if isinstance(pattern, int) else _SWA_PATTERN_DEFAULTS.get(arch, 0)
    rope_scaling = key("rope.scaling.type", "none")
    return GgufInfo(
        path=str(path),
        size_bytes=size,
        architecture=arch,
        name=str(raw.get("general.name", path.stem)),
        block_count=n_layer,
        embedding_length=n_embd,
        head_count=n_head,
        head_count_kv=max(kv_per_layer) if kv_per_layer else 0,
        head_count_kv_per_layer=kv_per_layer,
        key_length=head_dim,
        value_length=int(key("attention.value_length", head_dim)),
        context_length=int(key("context_length", 0) or 0),
        sliding_window=window if any(swa_layers) else 0,
        sliding_window_pattern=int(pattern_n) if any(swa_layers) else 0,
        swa_layers=swa_layers,
        rope_freq_base=float(key("rope.freq_base", 10000.0)),
        rope_scaling_type=str(rope_scaling),
        rope_dimension_count=int(key("rope.dimension_count", head_dim) or head_dim),
        file_type=_file_type(raw.get("general.file_type")),
        vocab_size=vocab,
        has_chat_template=isinstance(raw.get("tokenizer.chat_template"), str),
        tensor_bytes=sum(t.n_bytes for t in tensors),
        raw=raw,
        tensors=tensors,
    )


def _scalar(value: Any) -> int:
    return int(max(value)) if isinstance(value, list) else int(value)


def _swa_layers(arch: str, n_layer: int, window: int, pattern: Any) -> list[bool]:
    """Which layers use the sliding window (llama.cpp: layer il is SWA iff il % n < n - 1)."""
    if not window:
        return [False] * n_layer
    if isinstance(pattern, list):  # newer GGUFs store a per-layer bool array
        return [bool(x) for x in pattern][:n_layer]
    n = int(pattern) if isinstance(pattern, int) else _SWA_PATTERN_DEFAULTS.get(arch, 0)
    if n <= 0:
        return [True] * n_layer  # window without pattern: every layer slides (e.g. Mistral v0.1)
    return [il % n < n - 1 for il in range(n_layer)]


def _file_type(value: Any) -> str:
    if value is None:
        return "unknown"
    try:
        from gguf import LlamaFileType

        return LlamaFileType(int(value)).name.removeprefix("MOSTLY_")
    except (ValueError, ImportError):
        return str(value)
