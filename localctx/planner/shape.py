"""A model's shape as the planner needs it: per-layer KV heads and head dims, SWA layers, and
weights bytes per layer — all from the GGUF header, no weights loaded.

Missing metadata is an error naming the key (exit 4), because a guessed head count or window
silently turns a plan into fiction. Shapes the byte math does not model (MLA latent caches,
recurrent state) are refused for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localctx.errors import BadModelFile
from localctx.models.ggufmeta import GgufInfo, TensorEntry, read_gguf


@dataclass(frozen=True)
class ModelShape:
    name: str
    path: str
    architecture: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_vocab: int
    kv_heads: tuple[int, ...]  # per layer; 0 for layers without a KV cache
    key_lengths: tuple[int, ...]  # per layer head dim of K
    value_lengths: tuple[int, ...]
    swa: tuple[bool, ...]  # per layer: uses the sliding window
    window: int  # sliding window in tokens (0: none)
    trained_ctx: int
    layer_bytes: tuple[int, ...]  # weights of each repeating layer
    input_bytes: int  # token embeddings and other non-layer tensors: always on the CPU
    output_bytes: int  # output norm + head: the "layer" n_layer when offloading
    tied_output: bool  # no output.weight: llama.cpp copies token_embd to the output device
    token_embd_bytes: int = 0

    @property
    def weights_bytes(self) -> int:
        return self.input_bytes + sum(self.layer_bytes) + self.output_bytes


def load_shape(path: str | Path) -> ModelShape:
    """Read and validate a GGUF's header into a ModelShape (BadModelFile names a missing key)."""
    info = read_gguf(path)
    return shape_from(info, list(info.tensors))


def shape_from(info: GgufInfo, tensors: list[TensorEntry]) -> ModelShape:
    arch, raw = info.architecture, info.raw
    _refuse_unmodelled(arch, raw, info.path)
    n_layer = info.block_count
    n_ff = _per_layer_max(_required(raw, f"{arch}.feed_forward_length", info.path))
    key_swa = int(raw.get(f"{arch}.attention.key_length_swa", info.key_length))
    value_swa = int(raw.get(f"{arch}.attention.value_length_swa", info.value_length))
    swa = tuple(info.swa_layers[:n_layer]) + (False,) * max(0, n_layer - len(info.swa_layers))
    kv_heads = tuple(info.head_count_kv_per_layer[:n_layer])
    if len(kv_heads) != n_layer:
        raise BadModelFile(
            f"{info.path}: {arch}.attention.head_count_kv has {len(kv_heads)} entries "
            f"for {n_layer} layers"
        )
    layer_bytes = [0] * n_layer
    input_bytes = output_bytes = 0
    has_output = False
    embd_bytes = 0
    vocab_from_tensor = 0
    for t in tensors:
        if t.layer is not None and t.layer < n_layer:
            layer_bytes[t.layer] += t.n_bytes
        elif t.name.startswith("output"):
            output_bytes += t.n_bytes
            has_output = has_output or t.name == "output.weight"
        else:
            input_bytes += t.n_bytes
            if t.name == "token_embd.weight":
                embd_bytes = t.n_bytes
                vocab_from_tensor = t.shape[1] if len(t.shape) > 1 else 0
    n_vocab = info.vocab_size or vocab_from_tensor or int(raw.get(f"{arch}.vocab_size", 0))
    if not n_vocab:
        raise BadModelFile(f"{info.path}: missing metadata key tokenizer.ggml.tokens")
    tied = bool(tensors) and not has_output
    return ModelShape(
        name=info.name,
        path=info.path,
        architecture=arch,
        n_layer=n_layer,
        n_embd=info.embedding_length,
        n_ff=n_ff,
        n_head=info.head_count,
        n_vocab=n_vocab,
        kv_heads=kv_heads,
        key_lengths=tuple(key_swa if s else info.key_length for s in swa),
        value_lengths=tuple(value_swa if s else info.value_length for s in swa),
        swa=swa,
        window=info.sliding_window,
        trained_ctx=info.context_length,
        layer_bytes=tuple(layer_bytes),
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        tied_output=tied,
        token_embd_bytes=embd_bytes,
    )


def _required(raw: dict[str, Any], key: str, path: str) -> Any:
    if key not in raw:
        raise BadModelFile(f"{path}: missing metadata key {key} (the planner needs it)")
    return raw[key]


def _per_layer_max(value: Any) -> int:
    return int(max(value)) if isinstance(value, list) else int(value)


def _refuse_unmodelled(arch: str, raw: dict[str, Any], path: str) -> None:
    if f"{arch}.attention.kv_lora_rank" in raw:
        raise BadModelFile(
            f"{path}: {arch} caches a compressed latent (MLA, {arch}.attention.kv_lora_rank); "
            "the planner's byte math covers only per-head K/V caches"
        )
    if any(k.startswith(f"{arch}.ssm.") or k.startswith(f"{arch}.wkv.") for k in raw):
        raise BadModelFile(
            f"{path}: {arch} keeps a recurrent state, which the planner does not model"
        )
