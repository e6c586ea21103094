"""The GGUF tensor table: each tensor's name and byte size, read from the header alone.

The planner needs weights bytes per layer (to split them between devices for n_gpu_layers),
which the metadata does not say and `read_gguf` sums away. This walk skips the metadata values
(token lists are seeked over, never materialised) and reads only the tensor infos, so it costs
a few milliseconds even for a 262K-token vocabulary. `read_gguf` has already validated the file
(magic, version, truncation) before this runs.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from localctx.errors import BadModelFile

_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_LAYER = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class TensorEntry:
    name: str
    shape: tuple[int, ...]
    n_bytes: int

    @property
    def layer(self) -> int | None:
        """The repeating layer (block) this tensor belongs to; None for embeddings/output."""
        m = _LAYER.match(self.name)
        return int(m.group(1)) if m else None


def read_tensor_table(path: str | Path) -> list[TensorEntry]:
    """Every tensor's name, shape and size in bytes (ggml block math from the `gguf` package)."""
    try:
        with Path(path).open("rb") as fh:
            return _walk(fh)
    except (struct.error, EOFError, ValueError, KeyError) as exc:
        raise BadModelFile(f"{path}: cannot read the GGUF tensor table: {exc}") from None


def _read(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise EOFError(f"file ends {n - len(data)} bytes early")
    return data


def _u32(fh: BinaryIO) -> int:
    return int(struct.unpack("<I", _read(fh, 4))[0])


def _u64(fh: BinaryIO) -> int:
    return int(struct.unpack("<Q", _read(fh, 8))[0])


def _skip_value(fh: BinaryIO, vtype: int) -> None:
    if vtype == _STRING:
        fh.seek(_u64(fh), 1)
    elif vtype in _SCALAR_SIZES:
        fh.seek(_SCALAR_SIZES[vtype], 1)
    elif vtype == _ARRAY:
        etype, count = _u32(fh), _u64(fh)
        if etype in _SCALAR_SIZES:
            fh.seek(count * _SCALAR_SIZES[etype], 1)
        else:
            for _ in range(count):
                _skip_value(fh, etype)
    else:
        raise ValueError(f"unknown GGUF value type {vtype}")


def _walk(fh: BinaryIO) -> list[TensorEntry]:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    _read(fh, 8)  # magic + version, checked by read_gguf
    n_tensors, n_kv = _u64(fh), _u64(fh)
    for _ in range(n_kv):
        fh.seek(_u64(fh), 1)  # key
        _skip_value(fh, _u32(fh))
    entries = []
    for _ in range(n_tensors):
        name = _read(fh, _u64(fh)).decode("utf-8", errors="replace")
        dims = tuple(_u64(fh) for _ in range(_u32(fh)))
        ggml_type = _u32(fh)
        _u64(fh)  # offset
        block, type_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        n_elements = 1
        for d in dims:
            n_elements *= d
        entries.append(TensorEntry(name, dims, n_elements // block * type_bytes))
    return entries
