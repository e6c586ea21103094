"""KV cache types and the rules llama.cpp imposes on them, as data with reasons.

Block math (ggml): a quantized type stores `block_size` elements in `block_bytes` bytes, so its
bytes per element are block_bytes / block_size — q8_0 is 34/32 = 1.0625 B (0.531x f16) and
q4_0 18/32 = 0.5625 B (0.281x). Measured on 2 CPU cores with SmolLM2-135M at 4K context: f16
prefill 197 tok/s, q8_0 70, q4_0 42 — flash attention dequantizes on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from localctx.errors import BadKvSetting


@dataclass(frozen=True)
class CacheType:
    name: str
    ggml_type: int  # the GGML_TYPE_* enum value llama.cpp takes in type_k/type_v
    block_size: int
    block_bytes: int
    quantized: bool
    # Relative CPU prefill speed vs f16 (measured here, SmolLM2-135M, 4K, flash attention).
    cpu_prefill_factor: float

    @property
    def bytes_per_element(self) -> float:
        return self.block_bytes / self.block_size

    def row_bytes(self, n_elements: int) -> int:
        """Bytes of one row of n_elements (what one head of one token takes)."""
        return n_elements // self.block_size * self.block_bytes


CACHE_TYPES: dict[str, CacheType] = {
    t.name: t
    for t in (
        CacheType("f32", 0, 1, 4, False, 0.8),
        CacheType("f16", 1, 1, 2, False, 1.0),
        CacheType("bf16", 30, 1, 2, False, 0.9),
        CacheType("q8_0", 8, 32, 34, True, 70 / 197),
        CacheType("q5_1", 7, 32, 24, True, 0.25),
        CacheType("q5_0", 6, 32, 22, True, 0.25),
        CacheType("q4_1", 3, 32, 20, True, 0.22),
        CacheType("q4_0", 2, 32, 18, True, 42 / 197),
        CacheType("iq4_nl", 20, 32, 18, True, 0.2),
    )
}


def cache_type(name: str) -> CacheType:
    try:
        return CACHE_TYPES[name.lower()]
    except KeyError:
        known = ", ".join(CACHE_TYPES)
        raise BadKvSetting(f"unknown KV cache type '{name}' (known: {known})") from None


@dataclass(frozen=True)
class CacheRules:
    """What the chosen K/V pair implies, each with the reason to show the user."""

    flash_attn: bool
    notes: tuple[str, ...]


def check_cache_types(
    type_k: str,
    type_v: str,
    head_dims: tuple[int, int],
    *,
    backend: str = "cpu",
    flash_attn: bool | None = None,
) -> CacheRules:
    """Validate a K/V pair for a model's (key, value) head dims. Raises BadKvSetting."""
    k, v = cache_type(type_k), cache_type(type_v)
    notes: list[str] = []
    for kind, t, dim in (("K", k, head_dims[0]), ("V", v, head_dims[1])):
        if dim % t.block_size:
            raise BadKvSetting(
                f"KV type {t.name} cannot hold this model's {kind} head dim {dim}: "
                f"its block size {t.block_size} must divide it"
            )
    if v.quantized:
        if flash_attn is False:
            raise BadKvSetting(f"a quantized V cache ({v.name}) needs flash attention on")
        flash_attn = True
        notes.append(f"flash attention on: llama.cpp needs it for a quantized V cache ({v.name})")
    if backend == "cuda" and k.name != v.name and (k.quantized or v.quantized):
        notes.append(
            f"K={k.name} V={v.name} differ: CUDA compiles fast flash-attention kernels only for "
            "matching pairs (mixed pairs were reported 25-45x slower at prefill)"
        )
    if backend == "cpu" and (k.quantized or v.quantized):
        slow = min(k.cpu_prefill_factor, v.cpu_prefill_factor)
        notes.append(
            f"quantized KV on CPU prefills ~{1 / slow:.0f}x slower than f16 "
            "(flash attention dequantizes); it saves memory, not time"
        )
    return CacheRules(flash_attn=bool(flash_attn), notes=tuple(notes))
