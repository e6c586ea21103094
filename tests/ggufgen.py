"""Build small GGUF files with the `gguf` package for tests: metadata only, or with tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFWriter


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    layers: int = 4,
    embd: int = 256,
    heads: int = 4,
    kv_heads: int | list[int] = 2,
    key_length: int | None = None,
    value_length: int | None = None,
    context: int = 4096,
    sliding_window: int = 0,
    tensor_elems: int = 0,
    extra: dict[str, object] | None = None,
) -> Path:
    writer = GGUFWriter(str(path), arch)
    writer.add_name(f"synthetic-{arch}")
    writer.add_block_count(layers)
    writer.add_embedding_length(embd)
    writer.add_feed_forward_length(embd * 4)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_context_length(context)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(256)])
    if key_length:
        writer.add_key_length(key_length)
    if value_length:
        writer.add_value_length(value_length)
    if sliding_window:
        writer.add_sliding_window(sliding_window)
    for key, value in (extra or {}).items():
        if isinstance(value, int):
            writer.add_uint32(key, value)
        else:
            writer.add_string(key, str(value))
    if tensor_elems:
        writer.add_tensor("token_embd.weight", np.zeros(tensor_elems, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
