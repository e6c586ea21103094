"""Embedder: sentence vectors from a BERT-style GGUF through llama.cpp (no torch).

Contract: `Embedder.load(path).embed(texts)` returns float32 rows, one per text, L2-normalised,
pooled as the GGUF declares (mean for all-MiniLM-L6-v2, as sentence-transformers does: over
every token including [CLS] and [SEP]). Texts are tokenized by the model's own WordPiece vocab
inside llama.cpp ([CLS] ... [SEP] added) and cut to the length sentence-transformers uses
(`sentence_transformers.max_seq_length` in the GGUF, 256 here; else the trained context),
keeping the closing [SEP].

Several texts go into one llama_decode, one sequence id each (positions restart at 0). llama.cpp
masks attention across sequences but computes the n_tokens x n_tokens scores of the whole
batch, and its compute buffer grows with that square, so a bigger batch is not free. Measured
on 1 thread of this 2-core machine (MiniLM f16, ~+-10% from a neighbour's load):

    batch_tokens   256-token code chunks   19-token lines   peak RSS
    256            1,660-1,980 tok/s       2,040-2,120      134 MiB
    512            1,740-2,120             1,660-2,040      168 MiB
    1,024          1,530-1,780             1,790-2,020      238 MiB
    2,048          1,190                   1,910            376 MiB

and one text per decode does 67 lines/s against 105-115 packed. 512 is the default: packing
pays for short texts, two chunks fit, and 2,048 was 35% slower on chunks with twice the memory.
An encoder has no KV cache, so the context costs nothing beyond that compute buffer.

Native resources: the context is freed before the model; `close()` is idempotent. llama.cpp's
log goes to the ring buffer in `native_log`, never to the terminal.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from localctx.engine import native_log
from localctx.engine.lifetime import NativeOwner
from localctx.engine.llama import _init_backend
from localctx.errors import BadInput, BadModelFile, EngineFailed

MAX_SEQ_KEY = "sentence_transformers.max_seq_length"
LLAMA_MAX_SEQ = 256  # llama.cpp refuses a context with more sequences than this
DEFAULT_MAX_SEQS = 64
DEFAULT_BATCH_TOKENS = 512  # see the table above


# ---------------------------------------------------------------------------- pure decisions
def truncate_tokens(tokens: Sequence[int], limit: int) -> list[int]:
    """Cut to `limit` tokens, keeping the last one ([SEP]) as sentence-transformers does."""
    if len(tokens) <= limit:
        return list(tokens)
    if limit < 2:
        raise BadInput(f"a sequence limit of {limit} tokens cannot hold [CLS] and [SEP]")
    return [*tokens[: limit - 1], tokens[-1]]


def pack_sequences(lengths: Sequence[int], batch_tokens: int, max_seqs: int) -> list[list[int]]:
    """Group text indexes, in order, into batches of at most `batch_tokens` and `max_seqs`."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, n in enumerate(lengths):
        if n > batch_tokens:
            raise BadInput(f"a text of {n} tokens does not fit a batch of {batch_tokens}")
        if current and (used + n > batch_tokens or len(current) == max_seqs):
            groups.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        groups.append(current)
    return groups


def l2_normalise(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (the eps of torch's F.normalize, so a zero row stays 0)."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: np.ndarray = (rows / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return unit


# ---------------------------------------------------------------------------- the embedder
class Embedder(NativeOwner):
    """One embedding model and one context. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        gguf_path: Path | str,
        n_threads: int | None = None,
        n_ctx: int = 512,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        max_seqs: int = DEFAULT_MAX_SEQS,
    ) -> None:
        self._closed = False
        self._model: Any = None
        self._ctx: Any = None
        self._batch: Any = None
        path = Path(gguf_path)
        if not path.is_file():
            raise BadModelFile(f"no embedding model at {path}")
        if not 1 <= max_seqs <= LLAMA_MAX_SEQ:
            raise BadInput(f"max_seqs must be 1..{LLAMA_MAX_SEQ}, got {max_seqs}")
        _init_backend()
        marker = native_log.mark()
        self._model = llama_cpp.llama_model_load_from_file(
            str(path).encode(), llama_cpp.llama_model_default_params()
        )
        if not self._model:
            reason = native_log.last_error(native_log.since(marker))
            raise BadModelFile(f"llama.cpp could not load {path}: {reason}")
        try:
            self._configure(n_threads, n_ctx, batch_tokens, max_seqs)
        except BaseException:
            self.close()
            raise

    @classmethod
    def load(
        cls,
        gguf_path: Path | str,
        n_threads: int | None = None,
        n_ctx: int = 512,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        max_seqs: int = DEFAULT_MAX_SEQS,
    ) -> Embedder:
        """Load the GGUF. `n_ctx` caps the tokens of one text (at most the trained context);
        `batch_tokens` is how many tokens one llama_decode takes, across up to `max_seqs` texts.
        """
        return cls(gguf_path, n_threads, n_ctx, batch_tokens, max_seqs)

    def _configure(
        self, n_threads: int | None, n_ctx: int, batch_tokens: int, max_seqs: int
    ) -> None:
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.dim = int(llama_cpp.llama_model_n_embd(self._model))
        trained = int(llama_cpp.llama_model_n_ctx_train(self._model))
        if not 2 <= n_ctx <= trained:
            raise BadInput(f"n_ctx must be 2..{trained} (the trained context), got {n_ctx}")
        declared = self._meta_int(MAX_SEQ_KEY)
        self.max_tokens = min(n_ctx, declared) if declared else n_ctx
        if batch_tokens < self.max_tokens:
            raise BadInput(f"batch_tokens {batch_tokens} is below one text's {self.max_tokens}")
        self.batch_tokens = batch_tokens
        self.max_seqs = max_seqs

        threads = n_threads or os.cpu_count() or 1
        cparams = llama_cpp.llama_context_default_params()
        # llama.cpp splits n_ctx between sequences: give each the full per-text length.
        cparams.n_ctx = self.max_tokens * max_seqs
        cparams.n_batch = cparams.n_ubatch = batch_tokens  # an encoder needs it in one ubatch
        cparams.n_seq_max = max_seqs
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.embeddings = True
        cparams.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED  # the GGUF's own
        marker = native_log.mark()
        self._ctx = llama_cpp.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            reason = native_log.last_error(native_log.since(marker))
            raise EngineFailed(f"llama.cpp could not create an embedding context: {reason}")
        pooling = llama_cpp.llama_pooling_type(self._ctx)
        if pooling in (llama_cpp.LLAMA_POOLING_TYPE_NONE, llama_cpp.LLAMA_POOLING_TYPE_RANK):
            raise BadModelFile("this GGUF declares no sentence pooling (mean, cls or last)")
        self.pooling = int(pooling)
        self._mem = llama_cpp.llama_get_memory(self._ctx)  # None for BERT: no KV cache
        self._batch = llama_cpp.llama_batch_init(batch_tokens, 0, 1)

    def _meta_int(self, key: str) -> int:
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        try:
            return int(buf.value) if n > 0 else 0
        except ValueError:
            return 0

    # ------------------------------------------------------------------ text
    def tokenize(self, text: str) -> list[int]:
        """[CLS] word pieces [SEP], cut to `max_tokens`."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buf = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, capacity, True, False)
        if n < 0:
            capacity = -n
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, capacity, True, False)
        return truncate_tokens(buf[:n], self.max_tokens)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length float32 row of `dim` per text, in the order given."""
        if self._closed:
            raise EngineFailed("the embedder is closed")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        seqs = [self.tokenize(t) for t in texts]
        for group in pack_sequences([len(s) for s in seqs], self.batch_tokens, self.max_seqs):
            out[group] = self._decode_group([seqs[i] for i in group])
        return l2_normalise(out)

    def _decode_group(self, seqs: Sequence[Sequence[int]]) -> np.ndarray:
        batch = self._batch
        k = 0
        for seq_id, tokens in enumerate(seqs):
            for pos, tok in enumerate(tokens):
                batch.token[k] = tok
                batch.pos[k] = pos
                batch.n_seq_id[k] = 1
                batch.seq_id[k][0] = seq_id
                batch.logits[k] = True
                k += 1
        batch.n_tokens = k
        if self._mem:  # only a model with a cache (a causal embedder) keeps state between calls
            llama_cpp.llama_memory_clear(self._mem, True)
        rc = llama_cpp.llama_decode(self._ctx, batch)
        if rc != 0:
            raise EngineFailed(f"llama_decode failed with code {rc} on {len(seqs)} texts")
        rows = np.empty((len(seqs), self.dim), dtype=np.float32)
        for seq_id in range(len(seqs)):
            ptr = llama_cpp.llama_get_embeddings_seq(self._ctx, seq_id)
            if not ptr:
                raise EngineFailed(f"llama.cpp returned no embedding for sequence {seq_id}")
            rows[seq_id] = np.ctypeslib.as_array(ptr, shape=(self.dim,))
        return rows
