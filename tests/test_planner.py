"""Planner byte math, placement and recommendations on GGUFs built with `gguf` (no weights).

`build_gguf` writes real metadata and a real tensor table, then extends the file sparsely to
the size its tensors claim, so read_gguf's truncation check passes and an 8B model costs no
disk. The catalogue's big models are described here from their published configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter
from gguf.constants import GGML_QUANT_SIZES

from localctx.errors import BadInput, BadKvSetting, BadModelFile
from localctx.planner.budget import format_bytes, parse_bytes
from localctx.planner.devices import DeviceBudget, choose_target
from localctx.planner.footprint import all_layers, compute_reserved, footprint
from localctx.planner.kvmath import kv_cells, kv_sizing, padded
from localctx.planner.plan import make_plan, recommend
from localctx.planner.shape import load_shape

GIB, MIB = 2**30, 2**20


@dataclass(frozen=True)
class Spec:
    """A model's published shape; `weights` picks ggml types like a Q4_K_M file."""

    arch: str
    layers: int
    embd: int
    heads: int
    kv_heads: int | list[int]
    head_dim: int
    ff: int
    vocab: int
    ctx: int
    window: int = 0
    pattern: int = 0
    tied: bool = False
    drop: tuple[str, ...] = ()
    extra: dict[str, int] = field(default_factory=dict)


LLAMA31_8B = Spec("llama", 32, 4096, 32, 8, 128, 14336, 128256, 131072)
QWEN25_7B = Spec("qwen2", 28, 3584, 28, 4, 128, 18944, 152064, 32768)
QWEN25_15B = Spec("qwen2", 28, 1536, 12, 2, 128, 8960, 151936, 32768, tied=True)
GEMMA3_4B = Spec(
    "gemma3", 34, 2560, 8, 4, 256, 10240, 262208, 131072, window=1024, pattern=6, tied=True
)
TINY_SWA = Spec("gemma3", 6, 256, 4, 1, 64, 512, 1000, 8192, window=128, pattern=3, tied=True)


def build_gguf(path: Path, spec: Spec) -> Path:
    w = GGUFWriter(str(path), spec.arch)
    w.add_name(f"synthetic {spec.arch} {spec.layers}L")
    keys = {
        "block_count": spec.layers,
        "embedding_length": spec.embd,
        "attention.head_count": spec.heads,
        "attention.key_length": spec.head_dim,
        "attention.value_length": spec.head_dim,
        "feed_forward_length": spec.ff,
        "context_length": spec.ctx,
        **spec.extra,
    }
    if spec.window:
        keys["attention.sliding_window"] = spec.window
    if spec.pattern:
        keys["attention.sliding_window_pattern"] = spec.pattern
    for key, value in keys.items():
        if key not in spec.drop:
            w.add_uint32(f"{spec.arch}.{key}", value)
    if "attention.head_count_kv" not in spec.drop:
        if isinstance(spec.kv_heads, list):
            w.add_array(f"{spec.arch}.attention.head_count_kv", spec.kv_heads)
        else:
            w.add_uint32(f"{spec.arch}.attention.head_count_kv", spec.kv_heads)
    data = 0
    for name, shape, qtype in _tensors(spec):
        block, size = GGML_QUANT_SIZES[qtype]
        nbytes = int(np.prod(shape)) // block * size
        w.add_tensor_info(name, shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
        data += -(-nbytes // 32) * 32
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    with path.open("r+b") as fh:  # sparse: the tensors take no disk
        fh.truncate(-(-path.stat().st_size // 32) * 32 + data)
    return path


def _tensors(spec: Spec) -> list[tuple[str, tuple[int, ...], Q]]:
    """numpy-order shapes; Q4_K_M-like types (attn_v and ffn_down in q6_K)."""
    q_dim, kv_dim = spec.heads * spec.head_dim, spec.head_dim
    out = [("token_embd.weight", (spec.vocab, spec.embd), Q.Q4_K)]
    for il in range(spec.layers):
        heads = spec.kv_heads[il] if isinstance(spec.kv_heads, list) else spec.kv_heads
        p = f"blk.{il}."
        out += [
            (p + "attn_norm.weight", (spec.embd,), Q.F32),
            (p + "attn_q.weight", (q_dim, spec.embd), Q.Q4_K),
            (p + "attn_k.weight", (heads * kv_dim, spec.embd), Q.Q4_K),
            (p + "attn_v.weight", (heads * kv_dim, spec.embd), Q.Q6_K),
            (p + "attn_output.weight", (spec.embd, q_dim), Q.Q4_K),
            (p + "ffn_norm.weight", (spec.embd,), Q.F32),
            (p + "ffn_gate.weight", (spec.ff, spec.embd), Q.Q4_K),
            (p + "ffn_up.weight", (spec.ff, spec.embd), Q.Q4_K),
            (p + "ffn_down.weight", (spec.embd, spec.ff), Q.Q6_K),
        ]
    out.append(("output_norm.weight", (spec.embd,), Q.F32))
    if not spec.tied:
        out.append(("output.weight", (spec.vocab, spec.embd), Q.Q6_K))
    return out


def cpu(usable: int = 64 * GIB) -> DeviceBudget:
    return DeviceBudget("cpu", "cpu", usable, usable, usable, False, "test")


def gpu(usable: int, name: str = "cuda:0") -> DeviceBudget:
    return DeviceBudget(name, "cuda", usable, usable, usable, False, "test")


@pytest.fixture
def llama8b(tmp_path: Path):
    return load_shape(build_gguf(tmp_path / "llama8b.gguf", LLAMA31_8B))


# ------------------------------------------------------------------ KV byte math
def test_llama_gqa_kv_bytes_at_128k_match_the_published_figures(llama8b) -> None:
    # 32 layers x 8 KV heads x 128 dims x (K + V): 16 GiB f16, 8.5 GiB q8_0, 4.5 GiB q4_0.
    expected = {"f16": 16 * GIB, "q8_0": 8.5 * GIB, "q4_0": 4.5 * GIB}
    for kv, size in expected.items():
        sizing = kv_sizing(llama8b, kv, kv, 131072)
        assert sizing.total_bytes == size
        assert sizing.bytes_per_token == size / 131072
    assert kv_sizing(llama8b, "f16", "f16", 131072).bytes_per_token == 131072  # 128 KiB


def test_mixed_k_and_v_types_add_up_row_by_row(llama8b) -> None:
    mixed = kv_sizing(llama8b, "q8_0", "f16", 8192).total_bytes
    halves = (
        kv_sizing(llama8b, "q8_0", "q8_0", 8192).total_bytes
        + kv_sizing(llama8b, "f16", "f16", 8192).total_bytes
    ) // 2
    assert mixed == halves


def test_cells_are_padded_to_256_like_llama_cpp() -> None:
    assert [padded(n) for n in (1, 256, 257, 300, 1000, 8192)] == [256, 256, 512, 512, 1024, 8192]
    assert kv_cells(8192, 0) == (8192, 8192)
    assert kv_cells(8192, 512) == (8192, 1024)  # window 512 + ubatch 512
    assert kv_cells(300, 512) == (512, 512)  # never more SWA cells than global ones
    assert kv_cells(8192, 512, swa_full=True) == (8192, 8192)
    assert kv_cells(8192, 1024, n_ubatch=256) == (8192, 1280)


def test_gemma3_swa_layers_are_bounded_by_the_window(tmp_path: Path) -> None:
    shape = load_shape(build_gguf(tmp_path / "g.gguf", GEMMA3_4B))
    assert shape.swa.count(False) == 5  # layers 5, 11, 17, 23, 29 are global
    sizing = kv_sizing(shape, "f16", "f16", 131072)
    per_cell = 4 * 256 * 2 * 2  # 4 KV heads x 256 x (K+V) x 2 B
    assert sizing.swa_cells == 1536
    assert sizing.bytes_per_token == 5 * per_cell
    assert sizing.total_bytes == 5 * per_cell * 131072 + 29 * per_cell * 1536
    full = kv_sizing(shape, "f16", "f16", 131072, swa_full=True)
    assert full.total_bytes == 34 * per_cell * 131072
    assert full.total_bytes / sizing.total_bytes > 6  # why localctx runs with swa_full off


def test_per_layer_kv_heads_and_swa_head_dims_from_a_synthetic_model(tmp_path: Path) -> None:
    spec = replace(
        TINY_SWA,
        kv_heads=[1, 2, 0, 1, 2, 4],
        extra={"attention.key_length_swa": 32, "attention.value_length_swa": 32},
    )
    shape = load_shape(build_gguf(tmp_path / "t.gguf", spec))
    assert shape.swa == (True, True, False, True, True, False)
    assert shape.key_lengths == (32, 32, 64, 32, 32, 64)
    sizing = kv_sizing(shape, "q8_0", "q8_0", 1000)
    row = [h * d // 32 * 34 for h, d in zip(spec.kv_heads, shape.key_lengths, strict=True)]
    cells, swa = 1024, padded(128 + 512)
    expected = [2 * r * (swa if s else cells) for r, s in zip(row, shape.swa, strict=True)]
    assert list(sizing.layer_bytes) == expected
    assert sizing.layer_bytes[2] == 0  # a layer without KV heads has no cache


def test_a_type_whose_block_does_not_divide_the_head_dim_is_refused(tmp_path: Path) -> None:
    shape = load_shape(build_gguf(tmp_path / "t.gguf", replace(TINY_SWA, head_dim=48)))
    plan = make_plan(shape, 4096, [cpu()], cpu())
    assert {r.kv for r in plan.rows} == {"f16"}
    with pytest.raises(BadKvSetting, match="q8_0 cannot hold"):
        recommend(shape, 4096, cpu(), cpu(), kv="q8_0")


# ------------------------------------------------------------------ weights and placement
def test_weights_split_between_host_and_gpu_follow_llama_cpp_layer_order(llama8b) -> None:
    kv = kv_sizing(llama8b, "q8_0", "q8_0", 8192)
    on_cpu = footprint(llama8b, kv, 0)
    assert on_cpu.gpu_bytes == 0
    assert on_cpu.weights_host == llama8b.weights_bytes
    head_only = footprint(llama8b, kv, 1)  # k = 1 offloads just the output head
    assert head_only.weights_gpu == llama8b.output_bytes and head_only.kv_gpu == 0
    full = footprint(llama8b, kv, -1)
    assert full.n_gpu_layers == all_layers(llama8b) == 33
    assert full.weights_host == llama8b.input_bytes  # token embeddings stay on the host
    assert full.kv_gpu == kv.total_bytes and full.kv_host == 0
    half = footprint(llama8b, kv, 17)  # the head + the last 16 layers
    assert half.kv_gpu == kv.total_bytes // 2
    # This Q4_K_M-like mix gives ~4.8 GiB (the real Q4_K_M file holds 4.58 GiB of tensors).
    assert 4.3 * GIB < llama8b.weights_bytes < 4.9 * GIB


def test_a_tied_head_is_copied_to_the_gpu(tmp_path: Path) -> None:
    shape = load_shape(build_gguf(tmp_path / "q.gguf", QWEN25_15B))
    assert shape.tied_output
    kv = kv_sizing(shape, "f16", "f16", 4096)
    full = footprint(shape, kv, -1)
    assert full.weights_gpu == sum(shape.layer_bytes) + shape.output_bytes + shape.token_embd_bytes


def test_compute_buffer_formula_matches_llama_cpp_reports() -> None:
    # llama.cpp 0.3.36, CPU, n_ubatch 512: SmolLM2-135M 98.25 MiB, Gemma-3-270M 514.50 MiB.
    smol = replace_shape(n_vocab=49152, n_embd=576, n_ff=1536)
    gemma = replace_shape(n_vocab=262144, n_embd=640, n_ff=2048)
    assert compute_reserved(smol, 512) == 98.25 * MIB
    assert compute_reserved(gemma, 512) == 514.50 * MIB


def replace_shape(**fields: int):
    from localctx.planner.shape import ModelShape

    base = ModelShape(
        "x",
        "x.gguf",
        "llama",
        1,
        64,
        128,
        1,
        32,
        (1,),
        (64,),
        (64,),
        (False,),
        0,
        0,
        (0,),
        0,
        0,
        False,
    )
    return replace(base, **fields)


# ------------------------------------------------------------------ recommendations
def test_cpu_prefers_f16_while_it_fits(llama8b) -> None:
    rec = recommend(llama8b, 32768, cpu(), cpu())
    assert (rec.type_k, rec.n_ctx, rec.window, rec.n_gpu_layers) == ("f16", 32768, None, 0)


def test_cpu_falls_back_to_q8_then_q4_then_a_window(llama8b) -> None:
    weights = llama8b.weights_bytes + 600 * MIB  # + compute, output, runtime
    kv128 = {t: kv_sizing(llama8b, t, t, 131072).total_bytes for t in ("f16", "q8_0", "q4_0")}
    assert recommend(llama8b, 131072, cpu(weights + kv128["f16"]), cpu()).type_k == "f16"
    budget = cpu(weights + kv128["q8_0"])
    assert recommend(llama8b, 131072, budget, budget).type_k == "q8_0"
    budget = cpu(weights + kv128["q4_0"])
    assert recommend(llama8b, 131072, budget, budget).type_k == "q4_0"
    budget = cpu(weights + kv128["q4_0"] // 2)
    rec = recommend(llama8b, 131072, budget, budget)
    assert rec.type_k == "q4_0" and rec.window is not None and rec.fits
    assert 65536 < rec.window < 131072 and rec.n_ctx == rec.window and rec.window % 256 == 0
    assert rec.total_bytes <= budget.usable_bytes
    bigger = footprint(llama8b, kv_sizing(llama8b, "q4_0", "q4_0", rec.window + 256), 0)
    assert bigger.total_bytes > budget.usable_bytes  # the largest window that fits


def test_gpu_prefers_q8_0_then_q4_0_then_partial_offload(llama8b) -> None:
    rec = recommend(llama8b, 131072, gpu(24 * GIB), cpu())
    assert (rec.type_k, rec.n_gpu_layers, rec.window) == ("q8_0", 33, None)
    rec = recommend(llama8b, 131072, gpu(12 * GIB), cpu())
    assert (rec.type_k, rec.n_gpu_layers) == ("q4_0", 33)
    rec = recommend(llama8b, 131072, gpu(8 * GIB), cpu())  # an 8 GB laptop card
    assert rec.type_k == "q8_0" and 0 < rec.n_gpu_layers < 33 and rec.window is None
    kv = kv_sizing(llama8b, "q8_0", "q8_0", 131072)
    assert footprint(llama8b, kv, rec.n_gpu_layers).gpu_bytes <= 8 * GIB
    assert footprint(llama8b, kv, rec.n_gpu_layers + 1).gpu_bytes > 8 * GIB


def test_nothing_fits_says_so(llama8b) -> None:
    rec = recommend(llama8b, 131072, cpu(2 * GIB), cpu(2 * GIB))
    assert not rec.fits and "nothing fits" in rec.reason


def test_above_the_trained_context_needs_force(tmp_path: Path) -> None:
    shape = load_shape(build_gguf(tmp_path / "q.gguf", QWEN25_7B))
    rec = recommend(shape, 131072, cpu(), cpu())
    assert any("--force" in n for n in rec.notes)


def test_plan_rows_cover_every_type_and_context_with_fits_per_device(llama8b) -> None:
    devices = [cpu(32 * GIB), gpu(8 * GIB)]
    plan = make_plan(llama8b, 131072, devices, devices[1], contexts=(8192, 32768, 131072))
    assert [(r.kv, r.ctx) for r in plan.rows] == [
        (kv, n) for n in (8192, 32768, 131072) for kv in ("f16", "q8_0", "q4_0")
    ]
    row = {(r.kv, r.ctx): r for r in plan.rows}
    assert row["q4_0", 8192].fits == {"cpu": True, "cuda:0": True}
    assert row["f16", 131072].fits == {"cpu": True, "cuda:0": False}
    for r in plan.rows:
        assert r.total_bytes == r.device_bytes["host"] + r.device_bytes["gpu"]
        assert r.total_bytes >= r.kv_bytes + r.weights_bytes + r.compute_bytes
    data = plan.to_json()
    assert set(data["recommendation"]) >= {"type_k", "type_v", "n_ctx", "window", "n_gpu_layers"}
    assert set(data["rows"][0]) >= {
        "kv",
        "ctx",
        "kv_bytes",
        "kv_bytes_per_token",
        "weights_bytes",
        "compute_bytes",
        "total_bytes",
        "fits",
    }


def test_worked_examples_for_the_catalogue_models_at_128k(tmp_path: Path) -> None:
    """The README's table: KV bytes at 131,072 tokens from metadata alone."""
    expected = {  # GiB at f16 / q8_0 / q4_0
        "llama3.1-8b": (LLAMA31_8B, (16.0, 8.5, 4.5)),
        "qwen2.5-coder-7b": (QWEN25_7B, (7.0, 3.71875, 1.96875)),
        "qwen2.5-coder-1.5b": (QWEN25_15B, (3.5, 1.859375, 0.984375)),
        "gemma3-4b": (GEMMA3_4B, (2.669921875, 1.41839599609375, 0.75091552734375)),
    }
    for name, (spec, sizes) in expected.items():
        shape = load_shape(build_gguf(tmp_path / f"{name}.gguf", spec))
        got = [kv_sizing(shape, t, t, 131072).total_bytes / GIB for t in ("f16", "q8_0", "q4_0")]
        assert got == pytest.approx(sizes, rel=1e-9), name


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("8GiB", 8 * GIB),
        ("8000MB", 8 * 10**9),
        ("8589934592", 8 * GIB),
        ("7.5 GB", 75 * 10**8),
        ("512mib", 512 * MIB),
        ("16G", 16 * GIB),
    ],
)
def test_budgets_parse(text: str, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["8gigs", "", "-1GiB", "0", "GiB", "8 GiB extra", "1e9"])
def test_bad_budgets_are_one_clear_error(text: str) -> None:
    with pytest.raises(BadInput, match="budget"):
        parse_bytes(text)


def test_format_bytes() -> None:
    assert format_bytes(16 * GIB) == "16.00 GiB" and format_bytes(180 * MIB) == "180.00 MiB"


def test_context_must_be_positive(llama8b) -> None:
    for ctx in (0, -4096):
        with pytest.raises(BadInput, match="positive"):
            make_plan(llama8b, ctx, [cpu()], cpu())


def test_unknown_device_and_absent_gpu() -> None:
    with pytest.raises(BadInput, match="unknown device 'tpu'"):
        choose_target([cpu()], {}, "tpu")
    with pytest.raises(BadInput, match="no NVIDIA GPU"):
        choose_target([cpu()], {"cuda": "no NVIDIA GPU: NVML not found"}, "cuda")
    devices, target = choose_target([cpu()], {}, "cuda", 8 * GIB)  # a hypothetical card
    assert target.kind == "cuda" and target.usable_bytes == 8 * GIB and len(devices) == 2
    _, target = choose_target([cpu(64 * GIB)], {}, "cpu", 4 * GIB)
    assert target.usable_bytes == 4 * GIB and target.source == "--budget"


@pytest.mark.parametrize(
    "key",
    ["feed_forward_length", "block_count", "attention.head_count", "embedding_length"],
)
def test_a_missing_metadata_key_is_named(tmp_path: Path, key: str) -> None:
    path = build_gguf(tmp_path / "m.gguf", replace(TINY_SWA, drop=(key,)))
    with pytest.raises(BadModelFile, match=f"missing metadata key gemma3.{key}"):
        load_shape(path)


def test_mla_models_are_refused_by_name(tmp_path: Path) -> None:
    spec = replace(TINY_SWA, extra={"attention.kv_lora_rank": 512})
    with pytest.raises(BadModelFile, match="kv_lora_rank"):
        load_shape(build_gguf(tmp_path / "mla.gguf", spec))


def test_unknown_kv_type_is_a_kv_error(llama8b) -> None:
    with pytest.raises(BadKvSetting):
        kv_sizing(llama8b, "q3_k", "q3_k", 4096)


def test_a_metadata_only_gguf_plans_kv_and_says_weights_are_missing(tmp_path: Path) -> None:
    from tests.ggufgen import write_gguf

    path = write_gguf(
        tmp_path / "meta.gguf",
        layers=32,
        embd=4096,
        heads=32,
        kv_heads=8,
        extra={"llama.feed_forward_length": 14336, "llama.vocab_size": 128256},
    )
    shape = load_shape(path)
    assert shape.weights_bytes == 0
    assert kv_sizing(shape, "f16", "f16", 131072).total_bytes == 16 * GIB
    rec = recommend(shape, 131072, cpu(), cpu())
    assert any("weights are not counted" in n for n in rec.notes)
