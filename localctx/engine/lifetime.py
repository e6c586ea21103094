"""One owner for a llama.cpp model, its context and its batch: freed once, in reverse order.

LlamaEngine (chat) and Embedder (code search) each hold the three; a context outliving its
model, or a double free, crashes the process rather than raising, so the release lives here
once. `close()` is idempotent, also after an __init__ that failed before setting anything.
"""

from __future__ import annotations

from typing import Any, Self

import llama_cpp


class NativeOwner:
    _closed: bool
    _batch: Any
    _ctx: Any
    _model: Any

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
