"""Where every byte of a loaded model goes: weights, KV, compute, output, runtime. Pure.

Placement follows llama.cpp: with n_gpu_layers = k, layers il >= n_layer + 1 - k run on the
GPU, where index n_layer is the output head (k = n_layer + 1 offloads everything; k = 1 only
the head). Token embeddings always stay on the host. A layer's KV cache lives with the layer.

Compute buffers (flash attention on, which llama.cpp's "auto" picks on CPU, CUDA and Metal):
- reserved: the arena llama.cpp reserves for the worst ubatch. It is the logits of n_ubatch
  outputs (n_vocab x n_ubatch x 4 B) plus two rows of n_embd, or the FFN activations when
  larger. Measured: SmolLM2-135M 98.25 MiB, Gemma-3-270M 514.50 MiB (its 262K vocabulary) —
  matched exactly by this formula. A GPU commits it whole, so GPU budgets count it.
- resident on the host: Linux commits malloc'd pages only when touched and a chat asks for
  one output, so the host RSS holds only the activations of a ubatch. Measured after load and
  a 512-token prefill: ~16 MiB (SmolLM2), ~25 MiB (Gemma-3) above weights + KV + runtime.
GPU shares follow llama.cpp's placement and buffer rules but were not measured here (no GPU
on the 2-core machines): expect them to be the least exact figures of a plan.
Runtime: llama.cpp's vocabulary tables, graph metadata and threads: measured 21 MiB RSS for
SmolLM2 (49K tokens) and 44 MiB for Gemma-3 (262K): ~16 MiB + ~108 B per vocabulary entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from localctx.planner.kvmath import DEFAULT_UBATCH, KvSizing
from localctx.planner.shape import ModelShape

F32 = 4
MIB = 1024 * 1024
RUNTIME_FIXED = 16 * MIB
RUNTIME_PER_VOCAB = 108


@dataclass(frozen=True)
class Footprint:
    """Bytes on the host (CPU RAM) and on the accelerator for one placement."""

    n_gpu_layers: int  # normalised to 0..n_layer + 1
    weights_host: int
    weights_gpu: int
    kv_host: int
    kv_gpu: int
    compute_host: int
    compute_gpu: int
    compute_reserved: int  # what llama.cpp reserves (committed on a GPU)
    output_bytes: int  # logits of one token, host
    runtime_bytes: int  # vocabulary tables, graph, threads: host

    @property
    def host_bytes(self) -> int:
        return (
            self.weights_host
            + self.kv_host
            + self.compute_host
            + self.output_bytes
            + self.runtime_bytes
        )

    @property
    def gpu_bytes(self) -> int:
        return self.weights_gpu + self.kv_gpu + self.compute_gpu

    @property
    def total_bytes(self) -> int:
        return self.host_bytes + self.gpu_bytes

    @property
    def weights_bytes(self) -> int:
        return self.weights_host + self.weights_gpu

    @property
    def kv_bytes(self) -> int:
        return self.kv_host + self.kv_gpu

    @property
    def compute_bytes(self) -> int:
        return self.compute_host + self.compute_gpu


def all_layers(shape: ModelShape) -> int:
    """n_gpu_layers that offloads every layer and the output head."""
    return shape.n_layer + 1


def normalise_layers(shape: ModelShape, n_gpu_layers: int) -> int:
    return all_layers(shape) if n_gpu_layers < 0 else min(n_gpu_layers, all_layers(shape))


def compute_reserved(shape: ModelShape, n_ubatch: int, *, with_logits: bool = True) -> int:
    logits = shape.n_vocab + 2 * shape.n_embd if with_logits else 0
    activations = 3 * shape.n_ff + 4 * shape.n_embd
    return n_ubatch * F32 * max(logits, activations)


def compute_resident(shape: ModelShape, n_ubatch: int) -> int:
    head_dim = max(shape.key_lengths, default=0)
    touched = 3 * shape.n_ff + 4 * shape.n_embd + 2 * shape.n_head * head_dim
    return min(n_ubatch * F32 * touched, compute_reserved(shape, n_ubatch))


def runtime_bytes(shape: ModelShape) -> int:
    return RUNTIME_FIXED + RUNTIME_PER_VOCAB * shape.n_vocab


def footprint(
    shape: ModelShape,
    kv: KvSizing,
    n_gpu_layers: int = 0,
    *,
    n_ubatch: int = DEFAULT_UBATCH,
) -> Footprint:
    k = normalise_layers(shape, n_gpu_layers)
    first_gpu = shape.n_layer + 1 - k
    on_gpu = [il >= first_gpu for il in range(shape.n_layer)]
    head_on_gpu = k >= 1
    weights_gpu = sum(b for b, g in zip(shape.layer_bytes, on_gpu, strict=True) if g)
    weights_host = shape.input_bytes + sum(
        b for b, g in zip(shape.layer_bytes, on_gpu, strict=True) if not g
    )
    if head_on_gpu:
        # A tied head reads token_embd, which stays on the host: llama.cpp uploads a copy.
        weights_gpu += shape.output_bytes + (shape.token_embd_bytes if shape.tied_output else 0)
    else:
        weights_host += shape.output_bytes
    kv_gpu = sum(b for b, g in zip(kv.layer_bytes, on_gpu, strict=True) if g)
    any_host_layer = not all(on_gpu)
    compute_gpu = compute_reserved(shape, n_ubatch, with_logits=head_on_gpu) if k else 0
    compute_host = (
        compute_resident(shape, n_ubatch)
        if any_host_layer or not k
        else n_ubatch * F32 * 2 * shape.n_embd  # inputs staged on the host
    )
    return Footprint(
        n_gpu_layers=k,
        weights_host=weights_host,
        weights_gpu=weights_gpu,
        kv_host=kv.total_bytes - kv_gpu,
        kv_gpu=kv_gpu,
        compute_host=compute_host,
        compute_gpu=compute_gpu,
        compute_reserved=compute_reserved(shape, n_ubatch),
        output_bytes=shape.n_vocab * F32,
        runtime_bytes=runtime_bytes(shape),
    )
